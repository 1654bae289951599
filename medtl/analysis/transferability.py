"""Transferability estimators: how well the labels can be read off a cut's pooled pretrained features, without
fine-tuning. Each takes the features ``x`` ``(images, channels)`` and the labels ``y`` (classes ``0..K-1``) and
returns a score where higher means a better cut; scores are comparable between cuts of one backbone on one data
set, not between data sets. :data:`SCORES` names them for ``--cut-estimator``; the ridge probe (the default) lives in
:mod:`medtl.analysis.autocut` and the multi-exit run, which sees fine-tuning, in :mod:`medtl.analysis.multiexit`.

- ``logme``: LogME (You et al., ICML 2021), the evidence of Bayesian linear regression of the one-hot labels;
- ``hscore``: the shrinkage-regularised H-score (Ibrahim, Ponomareva & Mazumder, ICLR 2022): the H-score
  (Bao et al., ICIP 2019) with a Ledoit-Wolf covariance, which keeps it stable when channels outnumber images;
- ``nleep``: NLEEP (Li et al., CVPR 2021): LEEP (Nguyen et al., ICML 2020) over the components of a Gaussian
  mixture fitted to the PCA-reduced features, in place of a source classifier's labels;
- ``sfda``: SFDA (Shao et al., ECCV 2022): a regularised Fisher discriminant, its features pulled towards the
  other classes by its own confidence (self-challenging), and the mean probability it gives the true class.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ..errors import DataError

SHRINKAGE_FLOOR = 1e-4


def _classes(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError("transferability scores take one class label per image (binary or multi-class tasks)")
    return np.unique(y, return_inverse=True)[1]


def logme(x: np.ndarray, y: np.ndarray, iterations: int = 100) -> float:
    """Mean over classes of the per-image log evidence of ``y_c ~ N(x w, 1/beta)``, ``w ~ N(0, 1/alpha)``, with
    alpha and beta at their fixed point (MacKay's updates, as LogME does)."""
    y = _classes(y)
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    sigma = s ** 2
    values = []
    for c in range(int(y.max()) + 1):
        t = (y == c).astype(float)
        z = u.T @ t
        rest = float(t @ t - z @ z)  # the part of t outside the span of x
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
            m2 = float(((beta * s * z / (alpha + beta * sigma)) ** 2).sum())
            res = float(((alpha * z / (alpha + beta * sigma)) ** 2).sum()) + rest
            new_alpha, new_beta = gamma / (m2 + 1e-12), (n - gamma) / (res + 1e-12)
            done = abs(new_alpha - alpha) / alpha < 1e-5 and abs(new_beta - beta) / beta < 1e-5
            alpha, beta = new_alpha, new_beta
            if done:
                break
        logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (n * np.log(beta) + d * np.log(alpha) - n * np.log(2 * np.pi) - beta * res - alpha * m2 - logdet) / 2
        values.append(evidence / n)
    return float(np.mean(values))


def hscore(x: np.ndarray, y: np.ndarray) -> float:
    """Regularised H-score ``tr(cov(f)^-1 (1 - a) cov(E[f|y]))``, ``cov(f)`` Ledoit-Wolf-shrunk with weight ``a``:
    how much of the features' spread is spread between the class means."""
    from sklearn.covariance import LedoitWolf

    y = _classes(y)
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    shrunk = LedoitWolf(assume_centered=False).fit(x)
    means = np.stack([x[y == c].mean(0) for c in range(int(y.max()) + 1)])
    g = means[y]  # each image's class mean
    between = np.atleast_2d(np.cov(g, rowvar=False))
    return float(np.trace(np.linalg.pinv(shrunk.covariance_, rcond=1e-15) @ ((1 - shrunk.shrinkage_) * between)))


def leep(theta: np.ndarray, y: np.ndarray) -> float:
    """LEEP: the mean log-likelihood of ``y`` under ``P(y|x) = sum_z P(y|z) theta(x)_z``, the empirical conditional
    ``P(y|z)`` built from the soft assignments ``theta`` ``(images, Z)`` themselves."""
    y = _classes(y)
    theta = np.asarray(theta, dtype=np.float64)
    joint = np.stack([theta[y == c].sum(0) for c in range(int(y.max()) + 1)], axis=1) / len(y)  # P(z, y)
    conditional = joint / joint.sum(1, keepdims=True).clip(1e-300)  # P(y | z)
    return float(np.mean(np.log((theta @ conditional)[np.arange(len(y)), y].clip(1e-300))))


def nleep(x: np.ndarray, y: np.ndarray, components_per_class: int = 5, variance: float = 0.8, seed: int = 0) -> float:
    """NLEEP: LEEP over a Gaussian mixture (``components_per_class`` x classes components, diagonal covariances)
    fitted to the features' principal components that keep ``variance`` of their variance."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    classes = _classes(y)
    x = np.asarray(x, dtype=np.float64)
    reduced = PCA(n_components=variance, svd_solver="full", random_state=seed).fit_transform(x)
    components = min(components_per_class * (int(classes.max()) + 1), len(x) // 2)
    gmm = GaussianMixture(components, covariance_type="diag", reg_covar=1e-4, random_state=seed).fit(reduced)
    return leep(gmm.predict_proba(reduced), classes)


def _largest_eigenvalue(a: np.ndarray, iterations: int = 3) -> float:
    """A few power iterations, as SFDA's reference code estimates the within-class scatter's largest eigenvalue."""
    v = np.ones(len(a)) / np.sqrt(len(a))
    value = 0.0
    for _ in range(iterations):
        w = a @ v
        value = float(v @ w)
        v = w / (np.linalg.norm(w) + 1e-300)
    return value


def _fisher(x: np.ndarray, y: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
    """Class probabilities ``(images, K)`` of SFDA's regularised Fisher discriminant, and the shrinkage used."""
    from scipy.linalg import eigh
    from scipy.special import softmax

    k = int(y.max()) + 1
    priors = np.bincount(y, minlength=k) / len(y)
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    within = sum(p * np.atleast_2d(np.cov(x[y == c], rowvar=False, bias=True)) for c, p in enumerate(priors))
    if shrinkage is None:  # strong regularisation when the within-class scatter is small; floored (not in the
        # reference) so that the scatter stays invertible when channels outnumber images
        shrinkage = max(float(np.exp(-5 * _largest_eigenvalue(within))), SHRINKAGE_FLOOR)
    total = np.atleast_2d(np.cov(x, rowvar=False, bias=True))
    between = total - within
    within = (1 - shrinkage) * within + shrinkage * np.eye(x.shape[1])
    values, vectors = eigh(between, within)
    vectors = vectors[:, np.argsort(values)[::-1]]
    coef = means @ vectors @ vectors.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return softmax(x @ coef.T + intercept, axis=1), shrinkage


def sfda(x: np.ndarray, y: np.ndarray) -> float:
    """SFDA as its reference code computes it: the Fisher discriminant's probabilities, softened; each image moved
    towards the mean of the other classes by one minus its softened true-class probability (ConfMix); a second
    discriminant with the same shrinkage on the moved features; its mean probability of the true class."""
    y = _classes(y)
    x = np.array(x, dtype=np.float64)
    k = int(y.max()) + 1
    prob, shrinkage = _fisher(x, y, None)
    soft = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    others = np.stack([x[y != c].mean(0) for c in range(k)])
    p = soft[np.arange(len(y)), y][:, None]
    moved = p * x + (1 - p) * others[y]
    second, _ = _fisher(moved, y, shrinkage)
    return float(second[np.arange(len(y)), y].mean())


def label_targets(y: np.ndarray, task: str) -> np.ndarray:
    """The regression targets of a probe: one column per class (binary: the positive class only), 0 or 1."""
    if task == "multilabel":
        return y.astype(np.float64)
    if task == "binary" or int(y.max()) == 1:
        return (y == 1).astype(np.float64)[:, None]
    return np.eye(int(y.max()) + 1)[y]


def score(y: np.ndarray, predictions: np.ndarray, task: str, metric: str) -> float:
    """Mean one-vs-rest ``metric`` over the probe's output columns (one column for binary tasks)."""
    measure = roc_auc_score if metric == "auroc" else average_precision_score
    truth = y if task == "multilabel" else (label_targets(y, task) > 0)
    values = [measure(truth[:, j], predictions[:, j]) for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < len(y)]
    if not values:
        raise DataError("--cut auto needs training+validation images of at least two classes.")
    return float(np.mean(values))


SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "logme": logme, "hscore": hscore, "nleep": nleep, "sfda": sfda}
