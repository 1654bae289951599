"""Head2Toe (Evci et al., "Head2Toe: Utilizing Intermediate Representations for Better Transfer Learning", ICML 2022):
the pretrained network stays frozen and a linear head reads the pooled features of *every* block, so a task can use
low-level features without fine-tuning anything; a group-lasso penalty on the head's weights ranks the features and
only the strongest fraction is kept.

As here implemented: each tapped unit's output is globally average pooled (the paper also pools to 2x2 and larger
maps), the concatenation is standardised by a BatchNorm without scale and shift, and the first ``probe_epochs``
epochs train the head with the group lasso ``lambda * sum_j ||W[:, j]||``; then the ``keep_features`` fraction of
features with the largest ``||W[:, j]||`` is kept (a saved mask) and training goes on, without the penalty, on those
(the paper retrains a new head on them; here the head continues, its learning rate schedule restarting). With
``--cut`` the taps stop at the cut."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Strategy


def head2toe(cut: str | None = None, probe_epochs: int = 10, group_lasso: float = 1e-3,
             keep_features: float = 0.2) -> Strategy:
    """Head2Toe (Evci et al., ICML 2022): a linear head on the pooled features of every block of the frozen network;
    group lasso for probe_epochs epochs, then only the keep_features fraction of features with the largest weights.

    The head is :class:`medtl.model.TapHead` (its ``group_lasso`` and ``select``)."""
    if probe_epochs < 1:
        raise ConfigError(f"head2toe needs --probe-epochs (the group-lasso epochs before the selection) of at least 1, "
                          f"got {probe_epochs}.")
    if not 0 < keep_features <= 1:
        raise ConfigError(f"--keep-features is the fraction of features kept, in (0, 1]; got {keep_features}.")
    if group_lasso < 0:
        raise ConfigError(f"--group-lasso must be 0 or more, got {group_lasso}.")
    return Strategy("head2toe", cut=cut, freeze_to="all", taps=True, probe_epochs=probe_epochs,
                    group_lasso=group_lasso, keep_features=keep_features)
