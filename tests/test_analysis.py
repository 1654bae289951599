"""Feature-reuse analysis and --cut auto: SVCCA/CKA checked numerically, cut features, the estimate on a real
(tiny) data set, and `medtl analyze reuse` end to end."""
from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch

import medtl
from medtl.analysis.autocut import estimate_cut
from medtl.analysis.features import walk_cuts
from medtl.analysis.similarity import Moments, as_points, linear_cka, svcca, svcca_moments
from medtl.backbones import Trunk, backbone_cuts, create_backbone
from medtl.cli import main
from medtl.errors import DataError

N, C = 3000, 12


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _features(seed: int = 0, rank: int = C) -> torch.Tensor:
    """Correlated features with a non-zero mean; ``rank`` < C puts all variance in a subspace."""
    g = _gen(seed)
    return torch.randn(N, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, C, generator=g,
                                                                                 dtype=torch.float64) + 3.0


def test_identical_features_give_ones():
    x = _features()
    assert np.allclose(svcca(x, x), 1.0, atol=1e-6)
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_svcca_is_invariant_to_invertible_maps():
    x = _features()
    a = torch.randn(C, C, generator=_gen(1), dtype=torch.float64) + 2 * torch.eye(C, dtype=torch.float64)
    # no truncation: CCA itself is invariant to any invertible map
    assert np.allclose(svcca(x, x @ a - 5, threshold=1.0), 1.0, atol=1e-5)
    # low-rank features keep the same subspace under the map, so the 99% truncation keeps it too
    low = _features(rank=5)
    rho = svcca(low, low @ a)
    assert len(rho) == 5 and np.allclose(rho, 1.0, atol=1e-5)


def test_cka_is_invariant_to_orthogonal_maps_and_scaling_only():
    x = _features()
    q, _ = torch.linalg.qr(torch.randn(C, C, generator=_gen(2), dtype=torch.float64))
    assert linear_cka(x, 2.5 * x @ q + 1) == pytest.approx(1.0)
    stretch = torch.diag(torch.linspace(0.2, 5, C, dtype=torch.float64))
    assert linear_cka(x, x @ stretch) < 0.99


def test_independent_features_land_at_the_random_baseline():
    x, y = _features(), torch.randn(N, C, generator=_gen(3), dtype=torch.float64)
    real = svcca(x, y)
    noise = svcca(torch.randn(N, C, generator=_gen(4)), torch.randn(N, C, generator=_gen(5)))
    assert real.max() < 0.15 and abs(real.mean() - noise.mean()) < 0.03
    assert linear_cka(x, y) < 0.02
    assert list(real) == sorted(real, reverse=True)


def test_moments_in_batches_equal_one_pass():
    x, y = _features(), _features(6)
    m = Moments()
    for i in range(0, N, 700):
        m.add(x[i:i + 700], y[i:i + 700])
    assert np.allclose(svcca_moments(m), svcca(x, y), atol=1e-8)


def test_maps_of_different_sizes_and_too_few_points():
    a, b = torch.randn(4, 8, 16, 16), torch.randn(4, 6, 8, 8)
    p, q = as_points(a, b)
    assert p.shape == (4 * 16 * 16, 8) and q.shape == (4 * 16 * 16, 6)
    p2, _ = as_points(a, b, max_points=100, seed=1)
    assert len(p2) == 100 and torch.equal(p2, as_points(a, b, max_points=100, seed=1)[0])
    with pytest.raises(DataError, match="data points"):
        svcca(torch.randn(10, 20), torch.randn(10, 20))


@pytest.mark.parametrize("backbone", ["densenet121", "efficientnet_lite0"])
def test_walk_cuts_matches_each_trunk(backbone):
    model, _ = create_backbone(backbone, None)
    model.eval()
    cuts = backbone_cuts(model)
    if backbone == "densenet121":  # the stem, a cut inside dense block 1, the whole block
        cuts = [cuts[0], cuts[2], cuts[7]]
    x = torch.randn(2, 3, 32, 32)
    for cut, features in walk_cuts(model, cuts, x):
        trunk = Trunk(copy.deepcopy(model) if cut.partial else model, cut)  # a partial cut edits the model
        with torch.no_grad():
            assert torch.equal(features, trunk.eval()(x)), cut.name


def test_probe_leave_one_out_predictions_equal_refits(monkeypatch):
    import medtl.analysis.autocut as autocut

    monkeypatch.setattr(autocut, "LAMBDAS", (0.05,))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 6)), rng.integers(0, 2, 30)
    loo = autocut.probe_predictions(x, y, "binary")[:, 0]
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        a, t = z[keep] - z[keep].mean(0), y[keep] - y[keep].mean()
        w = np.linalg.solve(a.T @ a + 0.05 * len(y) * np.eye(6), a.T @ t)  # ridge with an unpenalised intercept
        assert loo[i] == pytest.approx((z[i] - z[keep].mean(0)) @ w + y[keep].mean() - y.mean(), abs=1e-9)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """A small BreastMNIST subset in MedMNIST layout (both classes in every split)."""
    full = medtl.load_dataset("breastmnist")
    arrays = {}
    for split, n in (("train", 120), ("val", 40), ("test", 40)):
        s = full.split(split)
        arrays[f"{split}_images"] = s.images[:n, 0].numpy()
        arrays[f"{split}_labels"] = s.labels[:n, None].numpy()
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, **arrays)
    return str(path)


def test_estimate_scores_every_cut(tiny_npz, fake_clock):
    import medtl.analysis.autocut as autocut

    data = medtl.load_dataset(tiny_npz)
    clock = fake_clock(autocut, step=1.25)
    result = estimate_cut("efficientnet_lite0", data, 32, levels=("stem", "block"))
    names = [c.name for c in backbone_cuts(create_backbone("efficientnet_lite0", None)[0]) if c.level != "layer"]
    assert [s.cut for s in result.scores] == names
    assert all(0 <= s.score <= 1 for s in result.scores)
    best = max(result.scores, key=lambda s: s.score)
    assert result.best == best.cut and 0 < result.tolerance < 0.2
    within = [s.cut for s in result.scores if s.score >= best.score - result.tolerance]
    assert result.pick == within[0]  # the shallowest cut the data cannot tell from the best
    assert result.images == 160
    assert len(clock.readings) >= 2 and result.seconds == clock.readings[-1] - clock.readings[0]  # its whole run


@pytest.fixture(scope="module")
def auto_run(tiny_npz, tmp_path_factory):
    return medtl.train(data=tiny_npz, cut="auto", image_size=32, epochs=1, threads=2, verbose=False,
                       out=str(tmp_path_factory.mktemp("runs")))


@pytest.mark.slow
def test_train_with_cut_auto_records_the_estimate(auto_run):
    saved = json.loads((auto_run.run_dir / "autocut.json").read_text())
    assert len(saved["scores"]) == 18 and saved["pick"] == auto_run.metrics["cut"]
    assert medtl.TrainConfig.load(auto_run.run_dir / "config.yaml").cut == saved["pick"]


def test_analyze_reuse_writes_figure_and_table(tiny_npz, tmp_path, capsys):
    """A saved model whose weights moved away from the pretrained ones more in deeper layers, as fine-tuning does."""
    from medtl.artifacts import save_model, write_json

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    model = medtl.build_classifier("efficientnet_lite0", 2, cut="blocks.2", image_size=32, in_chans=1)
    with torch.no_grad():
        for i, p in enumerate(model.trunk.parameters()):
            p.add_(torch.randn(p.shape, generator=_gen(i)) * p.std().nan_to_num() * i / 40)
    save_model(model, run)
    medtl.RunDir(run).save_config(medtl.TrainConfig(data=tiny_npz, cut="blocks.2", image_size=32))
    write_json(run / "metrics.json", {"strategy": "truncated", "backbone": "efficientnet_lite0", "cut": "blocks.2",
                                      "data": tiny_npz, "test_auprc": 0.8})
    out = tmp_path / "reuse"
    assert main(["analyze", "reuse", str(run), "--images", "24", "--results", str(tmp_path / "runs"),
                 "--out", str(out)]) == 0
    assert (out / "reuse.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(out / "reuse.csv")))
    assert [r["cut"] for r in rows] == ["stem", "blocks.0", "blocks.1.0", "blocks.1", "blocks.2.0", "blocks.2"]
    first, last = (float(rows[i]["svcca_mean"]) for i in (0, -1))
    assert first > 0.95 and first > last > float(rows[-1]["baseline_mean"])
    assert all(0 < float(r["cka"]) <= 1 for r in rows)
    assert float(rows[-1]["test_auprc_mean"]) == 0.8 and rows[0]["test_auprc_mean"] == "nan"
    assert "SVCCA mean" in capsys.readouterr().out
    assert main(["analyze", "reuse", str(tmp_path)]) == 2


def test_stage_two_searches_inside_the_chosen_block():
    from medtl.search import stage_two

    cuts = [(c.name, c.level) for c in backbone_cuts(create_backbone("resnet50", None)[0])]
    assert stage_two(cuts, "layer3", False) == [f"layer3.{i}" for i in range(5)]
    assert stage_two(cuts, "layer3", True) == [f"layer3.{i}" for i in range(5)] + ["layer4.0", "layer4.1"]
    assert stage_two(cuts, "layer4", True) == ["layer4.0", "layer4.1"]


COSTS = {"parameters": 10, "trainable_parameters": 10, "macs": 100, "epochs_run": 3, "train_seconds": 1.0}


def test_search_picks_on_validation_and_counts_its_cost(tmp_path, monkeypatch):
    """The search logic with a stand-in for training: validation AUPRC peaks at blocks.4.1 (inside blocks.4,
    the best block), while the test metrics would point elsewhere."""
    import medtl.experiment as experiment_module
    import medtl.search as search_module
    from medtl.artifacts import write_json

    val = {"blocks.3": 0.80, "blocks.4": 0.85, "blocks.5": 0.84, "blocks.4.0": 0.83, "blocks.4.1": 0.90}
    trained = []

    def fake_train(config, run_dir, verbose, report=None):
        trained.append(config.cut)
        run_dir.mkdir(parents=True)
        write_json(run_dir / "metrics.json", {
            "val_auprc": val.get(config.cut, 0.5) + 0.001 * config.seed, "val_auroc": 0.5, "test_auroc": 0.5,
            "test_auprc": 0.99 if config.cut == "conv_head" else 0.5, **COSTS})

    monkeypatch.setattr(experiment_module, "start", fake_train)
    result = search_module.search(medtl.TrainConfig(), seeds=[0, 1], out=tmp_path)
    assert result.block_pick == "blocks.4" and result.pick == "blocks.4.1"
    assert trained.count("blocks.4.1") == 2 and "blocks.3.0" not in trained
    assert result.cost["runs"] == 2 * (8 + 2) and result.cost["exhaustive_runs"] == 2 * 18
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["pick"] == "blocks.4.1" and saved["stage_two"] == ["blocks.4.0", "blocks.4.1"]
    rows = list(csv.DictReader(open(tmp_path / "search.csv")))
    assert len(rows) == 10 and {"val_auprc_mean", "test_auroc_mean", "test_auprc_std"} <= set(rows[0])
    search_module.search(medtl.TrainConfig(), seeds=[0, 1], out=tmp_path)  # everything finished: nothing trained
    assert len(trained) == 20


def fake_training(monkeypatch, best: str) -> list[str]:
    """Training replaced by a stand-in whose validation AUPRC is highest at ``best``; returns the cuts it trains."""
    import medtl.experiment as experiment_module
    from medtl.artifacts import write_json

    trained: list[str] = []

    def fake_train(config, run_dir, verbose, report=None):
        trained.append(config.cut)
        run_dir.mkdir(parents=True)
        write_json(run_dir / "metrics.json", {"val_auprc": 0.9 if config.cut == best else 0.8, "val_auroc": 0.5,
                                              "test_auroc": 0.5, "test_auprc": 0.5, **COSTS})

    monkeypatch.setattr(experiment_module, "start", fake_train)
    return trained


def test_search_with_cut_auto_fine_tunes_only_the_estimated_block(tmp_path, monkeypatch):
    import medtl.search as search_module
    from medtl.analysis.autocut import AutoCut

    trained = fake_training(monkeypatch, "blocks.3.1")
    estimate = AutoCut("blocks.3.0", "blocks.3.0", 0.0, "auprc", [], 624, 64, 2.0)
    monkeypatch.setattr(search_module, "estimate_for", lambda *args, **kwargs: estimate)
    result = search_module.search(medtl.TrainConfig(), seeds=[0], auto=True, out=tmp_path)
    assert trained == ["blocks.3", "blocks.3.0", "blocks.3.1"]
    assert result.block_pick == "blocks.3" and result.pick == "blocks.3.1"
    assert result.cost["estimate_seconds"] == 2.0 and result.cost["runs"] == 3


def test_search_with_a_shortlist_fine_tunes_the_estimates_best_ranked_cuts(tmp_path, monkeypatch):
    """--shortlist 3: the three best scores are fine-tuned (not the pick's block) and validation decides among them,
    even against the estimate's own order; without --cut auto the flag is refused."""
    import medtl.search as search_module
    from medtl.analysis.autocut import AutoCut, CutScore

    trained = fake_training(monkeypatch, "blocks.2")
    scores = [CutScore(cut, "block", 8, score) for cut, score in
              (("blocks.1", 0.1), ("blocks.2", 0.7), ("blocks.3", 0.2), ("blocks.4", 0.9), ("blocks.5", 0.8))]
    estimate = AutoCut("blocks.4", "blocks.4", 0.0, "auprc", scores, 624, 64, 2.0)
    monkeypatch.setattr(search_module, "estimate_for", lambda *args, **kwargs: estimate)
    result = search_module.search(medtl.TrainConfig(), seeds=[0], auto=True, shortlist=3, out=tmp_path)
    assert trained == ["blocks.2", "blocks.4", "blocks.5"]  # network order, no stage 2
    assert result.pick == "blocks.2" and result.block_pick is None and result.shortlist == trained
    assert result.cost["runs"] == 3 and "3 best-ranked cuts fine-tuned, the search picked blocks.2" in result.table()
    assert json.loads((tmp_path / "search.json").read_text())["shortlist"] == trained
    with pytest.raises(medtl.ConfigError, match="--shortlist"):
        search_module.search(medtl.TrainConfig(), seeds=[0], shortlist=3, out=tmp_path / "two-stage")
