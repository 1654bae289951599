"""Representation similarity between two layers: SVCCA (Raghu et al. 2017, the TruncatedTL paper's measure)
and linear CKA (Kornblith et al. 2019).

Both treat every channel as a neuron and every (image, spatial position) as a data point. Both only need the
centred second moments of the two ``(points, channels)`` matrices, so :class:`Moments` accumulates those batch by
batch (float64) and the feature maps of many images never have to be held at once.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

MAX_POINTS = 100_000


def as_points(a: torch.Tensor, b: torch.Tensor, max_points: int = MAX_POINTS,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature maps ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) of the same images as ``(points, channels)`` float64
    matrices.

    The smaller map is (bi/tri)linearly interpolated to the larger one's spatial size, so both describe the same
    positions; when there are more than ``max_points`` positions a seeded random subset is kept.
    """
    if a.ndim == 2 and b.ndim == 2:
        a, b = a[:, :, None, None], b[:, :, None, None]
    if a.ndim not in (4, 5) or b.ndim != a.ndim or len(a) != len(b):
        raise DataError(f"expected two (N, C, H, W) or (N, C, D, H, W) feature maps of the same N images, got shapes "
                        f"{tuple(a.shape)} and {tuple(b.shape)}.")
    size = max(tuple(a.shape[2:]), tuple(b.shape[2:]), key=np.prod)
    a, b = (_resize(x, size) for x in (a, b))
    a, b = (x.movedim(1, -1).reshape(-1, x.shape[1]).double() for x in (a, b))
    if len(a) > max_points:
        keep = torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))[:max_points]
        a, b = a[keep], b[keep]
    return a, b


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x.float(), size=size, mode="bilinear" if len(size) == 2 else "trilinear", align_corners=False)


class Moments:
    """Running sums of two ``(points, neurons)`` matrices, enough for their centred (cross-)covariances.

    The first batch's means are subtracted from every batch before summing (the shifted-data algorithm), so
    large means do not cancel away the small variances that SVCCA still keeps.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: tuple[torch.Tensor, torch.Tensor] | None = None
        self.sums: list[torch.Tensor] = []
        self.products: dict[str, torch.Tensor] = {}

    def add(self, x: torch.Tensor, y: torch.Tensor) -> Moments:
        if len(x) != len(y):
            raise DataError(f"the two feature matrices have {len(x)} and {len(y)} data points; they must be equal.")
        x, y = x.double(), y.double()
        if self.shift is None:
            self.shift = (x.mean(0), y.mean(0))
        x, y = x - self.shift[0], y - self.shift[1]
        new = {"xx": x.T @ x, "yy": y.T @ y, "xy": x.T @ y}
        if self.n == 0:
            self.sums, self.products = [x.sum(0), y.sum(0)], new
        else:
            self.sums = [self.sums[0] + x.sum(0), self.sums[1] + y.sum(0)]
            self.products = {k: self.products[k] + v for k, v in new.items()}
        self.n += len(x)
        return self

    def centred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Cxx, Cyy, Cxy)``: sums of products of the mean-centred matrices."""
        if self.n == 0:
            raise DataError("no data points were given.")
        mx, my = (s / self.n for s in self.sums)
        return (self.products["xx"] - self.n * torch.outer(mx, mx), self.products["yy"] - self.n * torch.outer(my, my),
                self.products["xy"] - self.n * torch.outer(mx, my))


def _whitening(cov: torch.Tensor, threshold: float, epsilon: float) -> torch.Tensor:
    """``C x k`` map onto the top principal directions that explain ``threshold`` of the variance, scaled so the
    projected data has orthonormal columns (up to ``epsilon``): the SVD step of SVCCA."""
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    explained = values.cumsum(0) / values.sum().clamp(min=epsilon)
    k = min(int((explained < threshold).sum()) + 1, len(values))
    return vectors[:, :k] / (values[:k] + epsilon).sqrt()


def svcca_moments(m: Moments, threshold: float = 0.99, epsilon: float = 1e-10) -> np.ndarray:
    """SVCCA canonical correlations from accumulated :class:`Moments`, sorted descending (see :func:`svcca`)."""
    cxx, cyy, cxy = m.centred()
    neurons = max(len(cxx), len(cyy))
    if m.n < neurons:
        raise DataError(f"{m.n} data points for {neurons} neurons: CCA would be trivially 1; use more images "
                        "(or a larger image size) so that there are at least as many data points as channels.")
    wx, wy = _whitening(cxx, threshold, epsilon), _whitening(cyy, threshold, epsilon)
    return torch.linalg.svdvals(wx.T @ cxy @ wy).clamp(0, 1).numpy()


def cka_moments(m: Moments) -> float:
    """Linear CKA from accumulated :class:`Moments` (see :func:`linear_cka`)."""
    cxx, cyy, cxy = m.centred()
    norms = torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy)
    return float(torch.linalg.matrix_norm(cxy) ** 2 / norms) if norms > 0 else 0.0


def svcca(x: torch.Tensor, y: torch.Tensor, threshold: float = 0.99, epsilon: float = 1e-10) -> np.ndarray:
    """SVCCA canonical correlations between ``x`` and ``y`` (``(points, neurons)`` each), sorted descending.

    Mean-centre, keep the principal directions explaining ``threshold`` of each one's variance, then CCA between
    the two reductions: the correlations are the singular values of ``Qx^T Qy`` for their orthonormal bases.
    Their mean is the usual single SVCCA similarity. Needs at least as many data points as neurons.
    """
    return svcca_moments(Moments().add(x, y), threshold, epsilon)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` of mean-centred ``(points, neurons)`` matrices.

    Invariant to orthogonal transforms and isotropic scaling (not to general invertible maps, unlike CCA).
    """
    return cka_moments(Moments().add(x, y))
