"""--cut-estimator (the registry, its option, the multi-exit run) and how sure `medtl search` says it is."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_npz

import medtl
from medtl.analysis.autocut import ESTIMATORS, estimate_cut
from medtl.config import CUT_ESTIMATORS
from medtl.evaluation.noise import standard_error


def test_the_option_lists_every_registered_estimator():
    assert CUT_ESTIMATORS == ESTIMATORS


def test_cut_estimator_needs_cut_auto_and_a_known_name(tmp_path, capsys):
    from medtl.cli import main

    assert main(["train", "--cut-estimator", "logme", "--out", str(tmp_path)]) == 2
    assert "add --cut auto" in capsys.readouterr().err
    assert main(["train", "--cut", "auto", "--cut-estimator", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown cut_estimator 'nope'. Valid: ridge, logme" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # every cut's features from the pretrained network
def test_a_transferability_estimator_picks_its_best_score(tmp_path):
    data = medtl.load_dataset(str(tiny_npz(tmp_path / "tiny.npz")))
    result = estimate_cut("efficientnet_lite0", data, 32, levels=("stem", "block"), estimator="hscore")
    assert result.estimator == "hscore" and result.tolerance == 0.0
    assert result.pick == result.best == max(result.scores, key=lambda s: s.score).cut
    assert result.ranking()[0].cut == result.pick and "regularised H-score" in result.table()


@pytest.mark.slow
def test_multi_exit_run_scores_every_cut_on_validation(tmp_path):
    data = medtl.load_dataset(str(tiny_npz(tmp_path / "tiny.npz")))
    result = estimate_cut("efficientnet_lite0", data, 32, levels=("stem", "block"), estimator="multiexit",
                          epochs=2, batch_size=8)
    assert [s.level for s in result.scores][:2] == ["stem", "block"] and len(result.scores) == 9
    assert all(0 <= s.score <= 1 for s in result.scores) and all(s.channels > 0 for s in result.scores)
    best = max(s.score for s in result.scores)
    # one standard error of the AUROC at the best score on the 8 validation images (0 at a perfect score)
    assert result.tolerance == standard_error("auroc", best, data.val.labels.numpy(), "binary")
    assert result.pick == next(s.cut for s in result.scores if s.score >= best - result.tolerance)


def _fake_run(run_dir, labels, p):
    from medtl.artifacts import write_csv, write_json

    run_dir.mkdir(parents=True)
    write_json(run_dir / "model.json", {"task": "binary"})
    write_csv(run_dir / "predictions_val.csv", [{"label": int(y), "prob_a": 1 - q, "prob_b": q}
                                                for y, q in zip(labels, p)])


def test_certainty_tells_a_margin_inside_the_noise_from_one_outside(tmp_path):
    from sklearn.metrics import roc_auc_score

    from medtl.certainty import certainty

    rng = np.random.default_rng(4)
    labels = np.arange(78) % 2
    signal = 1.5 * labels
    preds = {"twin-a": signal + rng.normal(size=78), "twin-b": signal + rng.normal(size=78),
             "weak": 0.2 * signal + rng.normal(size=78)}
    for cut, p in preds.items():
        _fake_run(tmp_path / cut, labels, 1 / (1 + np.exp(-p)))
    auc = {cut: roc_auc_score(labels, p) for cut, p in preds.items()}

    def sure(cuts):
        rows = [{"cut": c, "val_auroc_mean": auc[c]} for c in cuts]
        pick = max(cuts, key=auc.get)
        return certainty(rows, {c: [tmp_path / c] for c in cuts}, "auroc", pick)

    twins = sure(["twin-a", "twin-b"])  # two equally good, differently noisy models
    assert twins.margin == pytest.approx(abs(auc["twin-a"] - auc["twin-b"]))
    assert 0 < twins.margin < twins.se and twins.within_noise
    assert "do not tell the two apart" in "\n".join(twins.lines())
    apart = sure(["twin-a", "weak"])
    assert apart.margin > apart.se and apart.within_noise is False
    assert "larger than the validation noise" in "\n".join(apart.lines())


def test_search_prints_and_saves_how_sure_it_is(tmp_path, monkeypatch):
    import medtl.experiment as experiment_module
    import medtl.search as search_module
    from sklearn.metrics import average_precision_score, roc_auc_score

    from medtl.artifacts import write_json

    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2

    def fake_train(config, run_dir, verbose, report=None):
        strength = {"blocks.4": 2.0, "blocks.4.1": 3.0}.get(config.cut, 0.3)
        p = 1 / (1 + np.exp(-(labels * strength + rng.normal(size=60))))
        _fake_run(run_dir, labels, p)
        write_json(run_dir / "metrics.json", {"val_auroc": roc_auc_score(labels, p),
                                              "val_auprc": average_precision_score(labels, p), "test_auroc": 0.5,
                                              "test_auprc": 0.5, "parameters": 1, "trainable_parameters": 1,
                                              "macs": 1, "epochs_run": 1, "train_seconds": 1.0})

    monkeypatch.setattr(experiment_module, "start", fake_train)
    result = search_module.search(medtl.TrainConfig(), seeds=[0], out=tmp_path, select="auroc")
    sure = result.sure
    assert sure.ranking[0][0] == result.pick and sure.se > 0 and len(sure.ranking) == 8 + 2
    assert f"runner-up {sure.ranking[1][0]}" in result.table() and "how sure:" in result.table()
    saved = json.loads((tmp_path / "search.json").read_text())["certainty"]
    assert saved["within_noise"] == sure.within_noise and saved["se"] == sure.se


def test_one_pass_estimators_score_3d_features_too(tmp_path):
    from test_volumes import tiny_volumes

    data = medtl.load_dataset(str(tiny_volumes(tmp_path / "vol.npz")))
    for name in ("logme", "nleep"):
        result = estimate_cut("efficientnet_lite0", data, 16, volume="acs", levels=("block",), estimator=name)
        assert [s.cut for s in result.scores][:2] == ["blocks.0", "blocks.1"] and result.estimator == name
        assert all(np.isfinite(s.score) for s in result.scores)
