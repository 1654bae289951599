"""``medtl compare``: the grid's configurations, resuming an interrupted grid, choosing "-1"/"-2" on validation only."""
from __future__ import annotations

import json

import pytest

from medtl.compare import build_grid, compare, cut_points, paper_rows, summarise
from medtl.config import TrainConfig
from medtl.errors import ConfigError

TINY = TrainConfig(image_size=32, epochs=1, batch_size=128, threads=1, augment=False)


def test_grid_sets_each_strategys_own_cut_option(tmp_path):
    base = TrainConfig(freeze_to="blocks.1", layer_decay=0.5)  # options of one strategy must not leak into others
    runs = build_grid(base, ["truncated", "lwft", "transfusion", "full", "llrd"], "blocks.2,blocks.4", [0, 1], None,
                      tmp_path)
    assert len(runs) == (3 * 2 + 2) * 2 and [r.repeat for r in runs[:8]] == [0] * 8  # repeats outermost
    by = {(r.strategy, r.cut, r.repeat): r.config for r in runs}
    assert by[("truncated", "blocks.4", 0)].cut == "blocks.4" and by[("truncated", "blocks.4", 0)].freeze_to is None
    assert by[("lwft", "blocks.2", 1)].freeze_to == "blocks.2" and by[("lwft", "blocks.2", 1)].seed == 1
    assert by[("transfusion", "blocks.2", 0)].slim_from == "blocks.2"
    assert by[("full", None, 0)].layer_decay is None and by[("llrd", None, 0)].layer_decay == 0.5
    names = [r.run_dir.name for r in runs]
    assert len(set(names)) == len(names)
    again = build_grid(base, ["truncated"], "blocks.2", [0], None, tmp_path)[0]
    assert again.run_dir == by_dir(runs, "truncated", "blocks.2", 0)  # deterministic: an interrupted grid is found
    other = build_grid(TrainConfig(lr=0.01), ["truncated"], "blocks.2", [0], None, tmp_path)[0]
    assert other.run_dir != again.run_dir  # another setting never reuses a finished run
    resplit = build_grid(base, ["full"], "block", [], 3, tmp_path)
    assert [(r.config.resplit, r.config.seed) for r in resplit] == [(0, 0), (1, 1), (2, 2)]


def test_resplit_pools_the_official_splits_and_draws_new_stratified_ones():
    import torch

    from medtl.data import load_dataset
    from medtl.data.splits import resplit

    data = load_dataset("breastmnist")
    again = [resplit(data, (0.7, 0.1, 0.2), seed) for seed in (0, 0, 1)]
    total = sum(len(data.split(s)) for s in ("train", "val", "test"))
    assert sum(len(again[0].split(s)) for s in ("train", "val", "test")) == total
    assert len(again[0].test) == round(0.2 * total)
    assert torch.equal(again[0].train.images, again[1].train.images)  # the same seed, the same split
    assert not torch.equal(again[0].train.labels, again[2].train.labels)
    share = [again[0].split(s).labels.float().mean().item() for s in ("train", "val", "test")]
    assert max(share) - min(share) < 0.02  # stratified
    assert again[0].source["resplit"] == 0


def by_dir(runs, strategy, cut, repeat):
    return next(r.run_dir for r in runs if (r.strategy, r.cut, r.repeat) == (strategy, cut, repeat))


def test_cut_axis_levels_and_errors():
    block = cut_points("efficientnet_lite0", "block")
    assert [c for c, _ in block] == [f"blocks.{i}" for i in range(7)]  # conv_head (the whole model) is left out
    assert {lvl for _, lvl in cut_points("efficientnet_lite0", "all")} == {"stem", "block", "layer"}
    assert cut_points("resnet50", "layer3.3,layer3") == [("layer3.3", "layer"), ("layer3", "block")]
    with pytest.raises(ConfigError, match="unknown cut"):
        cut_points("resnet50", "layer9")
    with pytest.raises(ConfigError, match="unknown strategy"):
        build_grid(TINY, ["ttl"], "block", [0], None, ".")


def _record(strategy, cut, level, repeat, val, test):
    return {"strategy": strategy, "cut": cut, "level": level, "repeat": repeat, "val_auprc": val, "val_auroc": val,
            "test_auprc": test, "test_auroc": test, "test_accuracy": 0.8, "latency_ms": 1.0, "parameters": 10,
            "trainable_parameters": 10, "macs": 100}


def test_best_configurations_are_chosen_on_validation_not_test():
    records = []
    for repeat in (0, 1):
        records += [
            _record("truncated", "blocks.2", "block", repeat, val=0.90, test=0.70),  # best on validation
            _record("truncated", "blocks.4", "block", repeat, val=0.80, test=0.95),  # best on test
            _record("truncated", "blocks.4.1", "layer", repeat, val=0.93, test=0.60),  # best overall on validation
            _record("full", None, None, repeat, val=0.85, test=0.85),
        ]
    rows = summarise(records)
    table = {r["method"]: r for r in paper_rows(rows, "auprc")}
    assert set(table) == {"TTL-1", "TTL-2", "FTL"}
    assert table["TTL-1"]["cut"] == "blocks.2" and table["TTL-2"]["cut"] == "blocks.4.1"
    assert table["TTL-1"]["runs"] == 2 and table["TTL-1"]["test_auprc_mean"] == pytest.approx(0.70)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::medtl.errors.MedtlWarning")  # one epoch on 32 px may well be at chance
def test_compare_resumes_only_what_is_missing(tmp_path, monkeypatch, fake_clock):
    import medtl.experiment as experiment
    import medtl.evaluation.profile as profile

    clock = fake_clock(profile, step=0.0025)  # every timed forward pass of the latency measurement: 2.5 ms

    calls = []
    real_start, real_resume = experiment.start, experiment.resume
    monkeypatch.setattr(experiment, "start", lambda cfg, run_dir, verbose, report=None: calls.append(run_dir) or
                        real_start(cfg, run_dir, verbose, report))
    monkeypatch.setattr(experiment, "resume", lambda run_dir, **k: calls.append(run_dir) or real_resume(run_dir, **k))
    first = compare(TINY, ["truncated", "linear"], cuts="blocks.1", seeds=[0], out=tmp_path, plots=True)
    assert len(calls) == 2 and len(first.records) == 2
    assert {p.name for p in tmp_path.iterdir()} >= {"table.md", "table.csv", "configurations.csv", "runs.csv",
                                                     "cuts.png", "boxes.png"}
    assert "TTL-1" in (tmp_path / "table.md").read_text() and "linear" in (tmp_path / "table.md").read_text()
    kept = next(r for r in first.records if r["strategy"] == "linear")
    assert kept["trainable_parameters"] == 1280 * 2 + 2  # linear: the head only
    assert clock.readings and all(r["latency_ms"] == pytest.approx(2.5) for r in first.records)  # what was timed
    redo = tmp_path / "runs" / next(r["run"] for r in first.records if r["strategy"] == "truncated")
    (redo / "metrics.json").unlink()
    calls.clear()
    second = compare(TINY, ["truncated", "linear"], cuts="blocks.1", seeds=[0], out=tmp_path, plots=False)
    assert calls == [redo]  # resumed from its checkpoint, the finished run skipped
    assert json.loads((redo / "metrics.json").read_text())["test_auroc"] == pytest.approx(
        next(r for r in first.records if r["strategy"] == "truncated")["test_auroc"])
    assert len(second.records) == 2


@pytest.mark.slow
def test_cut_auto_makes_the_estimate_the_cut_axis(tmp_path, monkeypatch):
    import medtl.analysis.autocut as autocut

    estimate = autocut.AutoCut("blocks.1", "blocks.1", 0.0, "auprc", [], 624, 32, 0.1)
    monkeypatch.setattr(autocut, "estimate_cut", lambda *args, **kwargs: estimate)
    result = compare(TrainConfig(**{**TINY.to_dict(), "cut": "auto"}), ["truncated", "linear"], seeds=[0],
                     out=tmp_path, plots=False)
    assert sorted((r["strategy"], r["cut"]) for r in result.records) == [("linear", None), ("truncated", "blocks.1")]
    assert json.loads((tmp_path / "autocut.json").read_text())["pick"] == "blocks.1"
