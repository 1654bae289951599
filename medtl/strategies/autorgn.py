"""Auto-RGN (Lee et al., ICLR 2023, with surgical fine-tuning): every weight tensor trains at a rate proportional to its
relative gradient norm ``RGN = ||g|| / ||w||``, normalised by the largest RGN, so the layers the task pulls on most
move most, with no choice of blocks.

As in the paper's code, RGN is averaged over the first batches (:data:`BATCHES`) of each epoch and normalisation
layers' parameters are left out. Here those batches are the epoch's own first training steps (no extra passes): the
running mean of their RGN sets the rates from the first step on, and the rates stay fixed for the rest of the epoch.
The scaling is applied around each optimiser step, so any schedule (cosine, plateau) still sets the base rate.

Two departures, both because medtl's head is new (the paper fine-tunes a network whose head already fits the
classes): the head trains at the base rate and stays out of the normalisation, and so does any tensor whose norm is
zero (a zero-initialised bias), whose RGN is unbounded. Left in, either becomes the largest RGN and drives every
pretrained tensor's rate to about zero -- the network then trains like a linear probe at best (0.559 test AUROC on
BreastMNIST 32 px before this rule).
The strategy itself is :func:`medtl.strategies.auto_rgn` (``Strategy.rgn``)."""
from __future__ import annotations

import torch

BATCHES = 5  # batches per epoch whose RGN is averaged (the paper's code: the first 5)


class RelativeGradientNorm:
    """Optimizer step hooks that scale each parameter group's (one tensor's) rate by its normalised RGN."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, batches: int = BATCHES):
        self.groups = optimizer.param_groups
        # Auto-RGN sets the rates of pretrained tensors, not of those Strategy.param_groups marks "new" (the head)
        self.scaled = torch.tensor([not g.get("new", False) for g in self.groups])
        self.steps_per_epoch, self.batches = max(1, steps_per_epoch), batches
        self.step = 0
        self.sums = torch.zeros(len(self.groups))
        self.scale = torch.ones(len(self.groups))
        self.saved: list[float] = []
        optimizer.register_step_pre_hook(self.before)
        optimizer.register_step_post_hook(self.after)

    @torch.no_grad()
    def rgn(self) -> torch.Tensor:
        """Each group's RGN; NaN where it is undefined (no gradient yet counts as 0; a zero tensor as NaN)."""
        values = []
        for group in self.groups:
            p = group["params"][0]
            norm = float(p.norm())
            values.append(0.0 if p.grad is None else float(p.grad.norm()) / norm if norm > 0 else float("nan"))
        return torch.tensor(values)

    def scales(self, mean: torch.Tensor) -> torch.Tensor:
        """Rate multipliers from mean RGNs: RGN / the largest pretrained tensor's RGN; 1 for the head and for tensors
        whose RGN is undefined."""
        counted = self.scaled & ~mean.isnan()
        top = mean[counted].max() if counted.any() else torch.tensor(0.0)
        out = torch.ones_like(mean)
        if top > 0:
            out[counted] = mean[counted] / top
        return out

    def before(self, optimizer, args, kwargs) -> None:
        k = self.step % self.steps_per_epoch
        if k < self.batches:
            if k == 0:
                self.sums.zero_()
            self.sums += self.rgn()
            self.scale = self.scales(self.sums / (k + 1))
        self.saved = [g["lr"] for g in self.groups]
        for group, scale in zip(self.groups, self.scale.tolist()):
            group["lr"] = group["lr"] * scale

    def after(self, optimizer, args, kwargs) -> None:
        for group, lr in zip(self.groups, self.saved):
            group["lr"] = lr
        self.step += 1
