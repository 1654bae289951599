"""The benchmark harness runs: every section once at toy size (``benchmarks/run.py --smoke``), untimed. Its figures
are not checked (they belong in benchmarks/results/); this only keeps the harness from rotting between releases."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT

SECTIONS = ("throughput", "fastpath", "threads", "inference", "memory", "bf16_metrics")


@pytest.mark.slow
def test_every_benchmark_section_runs_at_toy_size():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--smoke", "--threads", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["sections"]) == set(SECTIONS)
    assert all(n > 0 for n in result["sections"].values()), result


def test_the_harness_knows_the_sections_it_is_tested_on():
    sys.path.insert(0, str(ROOT))
    from benchmarks import run

    assert run.SECTIONS == SECTIONS
    assert run.parse(["--smoke"]).smoke


def test_beyond_chooses_each_strategys_rate_on_validation_only():
    sys.path.insert(0, str(ROOT))
    from benchmarks.beyond import choose

    def run(strategy, lr, seed, val, test):
        return {"run": f"{strategy}-{lr}-{seed}", "strategy": strategy, "cut": None, "level": None, "repeat": seed,
                "lr": lr, "val_auprc": val, "val_auroc": val, "test_auroc": test, "test_auprc": test,
                "test_accuracy": test, "latency_ms": 1.0, "parameters": 10, "trainable_parameters": 10, "macs": 1,
                "stored_bytes": 40}

    records = [run("full", "1e-3", s, 0.9, 0.7) for s in (0, 1)] + [run("full", "1e-2", s, 0.8, 0.99) for s in (0, 1)]
    records += [run("lora", "1e-3", 0, 0.7, 0.9), run("lora", "1e-2", 0, 0.95, 0.6)]
    chosen, tried = choose(records)
    assert {(r["strategy"], r["lr"]) for r in chosen} == {("full", "1e-3"), ("lora", "1e-2")}  # test never looked at
    assert len(chosen) == 3 and len(tried) == 4 and {t["runs"] for t in tried} == {1, 2}


def test_a_replayed_shortlist_picks_on_each_seeds_validation_and_counts_its_runs():
    """The replay of ``search --cut auto --shortlist K``: the K best scores (not the pick), decided per seed on that
    run's validation metric; the gap is measured on the seed-mean test curve and the cost adds the runs' seconds."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.cut_estimators import exhaustive, shortlists, summary

    test = {"a": 0.80, "b": 0.90, "c": 0.85, "d": 0.70}
    choice = {"full_fine_tune_seconds": 100.0,
              "curve": [{"cut": c, "test_auroc_mean": t, "val_auprc_mean": 0.5, "train_seconds_mean": 50.0}
                        for c, t in test.items()],
              "runs": [{"cut": c, "repeat": seed, "val_auprc": v, "train_seconds": 40.0}
                       for seed, vals in ((0, {"a": .9, "b": .8, "c": .7, "d": .6}), (1, {"a": .1, "b": .8, "c": .7,
                                                                                         "d": .6}))
                       for c, v in vals.items()]}
    ridge = {"estimator": "ridge", "scores": {"a": 0.3, "b": 0.9, "c": 0.2, "d": 0.8},
             "cost_share_of_full_fine_tune": 0.05, "seconds_now": 5.0, "gap": 0.0}
    [two, three] = shortlists(choice, [ridge], [2, 3], "auprc")
    assert two["shortlist"] == ["b", "d"] and two["picks"] == {"0": "b", "1": "b"} and two["gap"] == 0.0
    assert three["shortlist"] == ["a", "b", "d"] and three["picks"] == {"0": "a", "1": "b"}
    assert three["gap"] == pytest.approx(0.05) and three["gap_worst_replay"] == pytest.approx(0.10)
    assert three["cost_share_of_full_fine_tune"] == pytest.approx(0.05 + 3 * 40 / 100)
    [by_auprc] = shortlists(choice, [{**ridge, "scores_auprc": {"a": 0.9, "b": 0.1, "c": 0.2, "d": 0.8}}], [2], "auprc")
    assert by_auprc["shortlist"] == ["a", "d"]  # ranked by the search's metric when the estimator has one
    del choice["runs"]  # an older curve file: one replay on seed means, which says so
    [mean] = shortlists(choice, [ridge], [2], "auprc")
    assert mean["replayed_on"] == "seed means" and mean["cost_share_of_full_fine_tune"] == pytest.approx(1.05)
    report = {"x-64": {"rows": [{**ridge, "gap": 0.1}], "shortlists": [two, three],
                       "full_fine_tune_seconds_recorded": 1}}
    lines = summary(report)
    assert lines[0].startswith("Across the 1 curves (3 configurations") and "| ridge + shortlist 2 |" in lines[4]
    choice.update(exhaustive_train_seconds=400.0, curve=[{**r, "val_auprc_mean": 0.9 if r["cut"] == "c" else 0.8}
                                                          for r in choice["curve"]])
    reference = exhaustive(choice, "auprc")  # every cut fine-tuned, the best on validation: "c" (0.05), not "b"
    assert reference["pick"] == "c" and reference["gap"] == pytest.approx(0.05)
    assert reference["cost_share_of_full_fine_tune"] == 4.0


def test_subsample_keeps_patients_whole_and_the_test_split_untouched(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.subsample import main

    rows = ["path,label,split,patient"]
    rows += [f"img{i}.png,{'sick' if i % 4 else 'well'},train,p{i // 2}" for i in range(200)]
    rows += [f"t{i}.png,{'sick' if i % 2 else 'well'},test,q{i}" for i in range(30)]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    main([str(tmp_path / "all.csv"), str(tmp_path / "sub.csv"), "--train", "60", "--val", "20", "--group", "patient"])
    import csv
    sub = list(csv.DictReader(open(tmp_path / "sub.csv")))
    split = {s: [r for r in sub if r["split"] == s] for s in ("train", "val", "test")}
    assert len(split["test"]) == 30 and 58 <= len(split["train"]) <= 64 and 18 <= len(split["val"]) <= 24
    assert not {r["patient"] for r in split["train"]} & {r["patient"] for r in split["val"]}
    assert {r["label"] for r in split["val"]} == {"sick", "well"}
    assert all(r["path"].startswith(str(tmp_path)) for r in sub)  # paths resolved against the source's folder


def test_a_resized_copy_holds_the_pixels_training_reads_from_the_originals(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.resize_manifest import main
    from medtl.data.images import load_images

    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    rows = ["path,label,split,patient"]
    for i, mode in enumerate(["L", "RGB", "L"]):
        shape = (90, 70) if mode == "L" else (90, 70, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / "src" / f"{i}.jpg")
        rows.append(f"src/{i}.jpg,{i % 2},train,p{i}")
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    main([str(tmp_path / "all.csv"), str(tmp_path / "copy"), "--size", "32"])
    copy = (tmp_path / "copy" / "manifest.csv").read_text().splitlines()
    assert copy[0] == rows[0] and [r.split(",", 1)[1] for r in copy[1:]] == [r.split(",", 1)[1] for r in rows[1:]]
    original, _, _ = load_images([tmp_path / r.split(",")[0] for r in rows[1:]], 32)
    resized, _, _ = load_images([tmp_path / "copy" / r.split(",")[0] for r in copy[1:]], 32)
    assert original.shape == resized.shape == (3, 3, 32, 32) and torch.equal(original, resized)


def test_records_choose_on_validation_and_count_every_configuration(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.records import main

    header = "run,strategy,cut,level,repeat,test_auroc,test_auprc,test_accuracy,val_auroc,val_auprc,best_epoch," \
             "epochs_run,train_seconds,parameters"
    grids = {"a": [("truncated", "blocks.3", 0.99, 0.90), ("full", "", 0.80, 0.95)],  # full: best test, worse val
             "b": [("truncated", "blocks.4", 0.70, 0.93)]}
    for name, configs in grids.items():
        (tmp_path / name).mkdir()
        lines = [header] + [f"{s}-s{seed},{s},{cut},block,{seed},{test + seed / 100},0.9,0.8,0.9,{val - seed / 1000},"
                            f"5,8,10,1000" for s, cut, test, val in configs for seed in range(3)]
        (tmp_path / name / "runs.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "ens-b").mkdir()  # an ensemble of b's seeds
    (tmp_path / "ens-b" / "metrics.json").write_text(json.dumps(
        {"members": 3, "parameters": 3000, "test_auroc": 0.75, "test_accuracy": 0.7, "val_auprc": 0.96,
         "val_auroc": 0.9}))
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rec")])
    result = json.loads((tmp_path / "rec.json").read_text())
    assert len(result["configurations"]) == 3 and len(result["ensembles"]) == 1
    assert result["chosen"]["configuration"] == "a: full" and abs(result["chosen"]["test_auroc"] - 0.81) < 1e-9
    assert result["chosen_ensemble"]["test_auroc"] == 0.75
    assert len((tmp_path / "rec-runs.csv").read_text().splitlines()) == 1 + 9
