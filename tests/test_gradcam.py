"""Grad-CAM: the two sanity checks of Adebayo et al. (2018) and of localisation, the figure, and ``medtl explain``.

Both checks could fail: a Grad-CAM that only echoed image intensity or the network's architecture would pass neither.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import medtl
from medtl.analysis.gradcam import explain, gradcam, write_explanation
from medtl.cli import main
from medtl.model import rebuild

SIZE, PATCH = 32, 8


def _patch_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images, each with one 8 x 8 patch at a random place: bright for class 1, dark for class 0. The class is
    decided by the patch alone, and its place changes from image to image."""
    images = rng.normal(110, 25, (n, SIZE, SIZE)).clip(0, 255)
    labels = np.arange(n) % 2
    corners = rng.integers(0, SIZE - PATCH + 1, (n, 2))
    for image, label, (y, x) in zip(images, labels, corners):
        image[y:y + PATCH, x:x + PATCH] = 235 if label else 20
    return images.astype(np.uint8), labels, corners


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    """A short fine-tuning on the patch images; returns the run and its test images' patch corners."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("patches")
    arrays, corners = {}, None
    for split, n in (("train", 240), ("val", 40), ("test", 40)):
        images, labels, corners = _patch_images(n, rng)
        arrays |= {f"{split}_images": images, f"{split}_labels": labels[:, None]}
    np.savez(root / "patches.npz", **arrays)
    result = medtl.train(data=str(root / "patches.npz"), cut="blocks.1", image_size=SIZE, epochs=6, batch_size=32,
                         lr=3e-3, augment=False, threads=1, out=str(root / "runs"), verbose=False)
    return result, corners


def _test_batch(run):
    model = medtl.load_model(run.run_dir)
    data = medtl.load_dataset(str(medtl.TrainConfig.load(run.run_dir / "config.yaml").data))
    x = medtl.Preprocess(SIZE, tuple(model.spec.mean), tuple(model.spec.std))(data.test.images)
    return model, x, data.test.labels


@pytest.mark.slow
def test_maps_peak_inside_the_patch_that_decides_the_class(patch_run):
    run, corners = patch_run
    assert run.metrics["test_auroc"] > 0.95  # the model found the cue; otherwise there is nothing to localise
    model, x, labels = _test_batch(run)
    maps, _ = gradcam(model, x, labels)
    assert maps.shape == (len(x), SIZE, SIZE) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    peaks = [np.unravel_index(int(m.argmax()), m.shape) for m in maps]
    margin = 2  # pixels: the maps are 8 x 8 cells of 4 px, upsampled
    inside = [y0 - margin <= py < y0 + PATCH + margin and x0 - margin <= px < x0 + PATCH + margin
              for (py, px), (y0, x0) in zip(peaks, corners)]
    assert np.mean(inside) >= 0.8, f"the peak lies in the patch in only {np.mean(inside):.0%} of the images"


@pytest.mark.slow
def test_maps_of_a_randomised_model_differ(patch_run):
    """Model randomisation: the same architecture with re-initialised weights must give other maps."""
    run, _ = patch_run
    model, x, labels = _test_batch(run)
    torch.manual_seed(0)
    random = rebuild(model.spec).eval()
    trained, _ = gradcam(model, x, labels)
    shuffled, _ = gradcam(random, x, labels)
    rho = [spearmanr(a.flatten(), b.flatten()).statistic for a, b in zip(trained.numpy(), shuffled.numpy())]
    rho = np.nan_to_num(rho)  # an all-zero map has no ranks: it shares nothing with the other
    assert np.median(rho) < 0.4, f"median Spearman rho {np.median(rho):.2f} between trained and random maps"
    same = [spearmanr(a.flatten(), b.flatten()).statistic for a, b in zip(trained.numpy(),
                                                                           gradcam(model, x, labels)[0].numpy())]
    assert np.allclose(same, 1)  # and the measure itself sees identical maps as identical


def test_gradcam_works_on_volumes():
    """Three spatial dimensions: channel weights average over all of them, the map is upsampled trilinearly."""
    from medtl.analysis import gradcam as module

    class Volume(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, stride=2, padding=1), torch.nn.ReLU())
            self.fc = torch.nn.Linear(4, 2)
            self.spec = type("Spec", (), {"units": ["0"], "task": "multiclass"})()

        def forward(self, x):
            return self.fc(self.trunk(x).mean((2, 3, 4)))

    maps, probs = module.gradcam(Volume(), torch.randn(3, 1, 8, 10, 12))
    assert maps.shape == (3, 8, 10, 12) and probs.shape == (3, 2)


@pytest.mark.slow
def test_explain_writes_figure_and_arrays_and_cli(patch_run, tmp_path):
    run, _ = patch_run
    result = explain([run.run_dir, run.run_dir], images=3)
    assert sorted(result.labels.tolist()) == [0, 0, 1] and len(result.maps) == 2
    png, arrays = write_explanation(result, tmp_path)
    assert png.stat().st_size > 5_000
    saved = np.load(arrays)
    assert saved["maps_1"].shape == (3, SIZE, SIZE) and list(saved["classes"]) == result.classes
    assert main(["explain", str(run.run_dir), "--images", "2", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "gradcam.png").is_file()
    assert main(["explain", str(run.run_dir), "--layer", "nope", "--out", str(tmp_path)]) == 2
