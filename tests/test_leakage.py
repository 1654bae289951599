"""The leakage guard (issue #10 item 6): `medtl data check`, `check_data`, group-disjoint splits, train-start
warnings."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medtl
from medtl.cli import main
from medtl.data import load_dataset
from medtl.data.check import NEAR_THRESHOLD, check_data
from medtl.data.splits import resplit
from medtl.errors import ConfigError, DataError, MedtlWarning

SIZE = 24


def smooth(seed: int) -> np.ndarray:
    """A distinct image: random 6x6 noise upsampled to SIZE (structure at the scale of the 16x16 embedding)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((SIZE, SIZE), Image.BILINEAR))


def near_copy(a: np.ndarray, seed: int) -> np.ndarray:
    """``a`` re-exposed (contrast 0.9, +12) with +-2 of noise: not identical, but the same picture."""
    jitter = np.random.default_rng(seed).integers(-2, 3, a.shape)
    return np.clip(a.astype(int) * 0.9 + 12 + jitter, 0, 255).astype(np.uint8)


def save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, set[frozenset[str]], set[frozenset[str]]]:
    """train/val/test folders of distinct images, with 2 exact and 3 near duplicates planted across splits."""
    root = tmp_path / "data"
    images = {}
    for split, n in (("train", 40), ("val", 10), ("test", 10)):
        for c in "ab":
            for i in range(n):
                name = f"{split}/{c}/{i}.png"
                images[name] = smooth(zlib.crc32(name.encode()))
    exact = {("train/a/0.png", "test/a/100.png"), ("train/b/1.png", "val/b/100.png")}
    near = {("train/a/2.png", "test/b/101.png"), ("train/b/3.png", "test/a/102.png"), ("val/a/4.png", "test/a/103.png")}
    for k, (src, dst) in enumerate(sorted(near)):
        images[dst] = near_copy(images[src], k)
    for src, dst in exact:
        images[dst] = images[src]
    for name, a in images.items():
        save(root / name, a)
    return root, {frozenset(p) for p in exact}, {frozenset(p) for p in near}


def test_check_finds_every_planted_duplicate_and_no_false_pair(planted) -> None:
    root, exact, near = planted
    report = check_data(load_dataset(str(root), image_size=SIZE))
    assert {frozenset(i.id for i in g) for g in report.exact} == exact
    assert {frozenset((a.id, b.id)) for a, b, _ in report.near} == near
    assert all(c >= NEAR_THRESHOLD for *_, c in report.near)
    assert report.leaks and not report.straddling_groups and not report.repeated_ids
    assert report.class_counts == {"train": [40, 40], "val": [10, 11], "test": [13, 11]}
    text = report.summary()
    assert "2 set(s) of pixel-identical images span splits" in text and "3 pair(s) of near-duplicate" in text
    assert json.loads(json.dumps(report.to_dict()))["leaks"] is True


def test_distinct_random_images_are_clean(tmp_path: Path) -> None:
    for split, n in (("train", 60), ("test", 20)):
        for c in "ab":
            for i in range(n):
                save(tmp_path / split / c / f"{i}.png", smooth(zlib.crc32(f"{split}{c}{i}".encode())))
    report = check_data(load_dataset(str(tmp_path), image_size=SIZE))
    assert not report.exact and not report.near and not report.leaks and report.warnings() == []


def test_data_check_command_writes_json_and_pairs_and_sets_the_exit_status(planted, tmp_path: Path, capsys) -> None:
    root, *_ = planted
    out = tmp_path / "check"
    assert main(["data", "check", str(root), "--image-size", str(SIZE), "--out", str(out), "--threads", "1"]) == 1
    saved = json.loads((out / "leakage.json").read_text())
    assert len(saved["exact_duplicates"]) == 2 and len(saved["near_duplicates"]) == 3
    assert (out / "pairs.png").stat().st_size > 0
    assert "LEAKAGE across splits" in capsys.readouterr().out
    clean = tmp_path / "clean"
    for c in "ab":
        for i in range(10):
            save(clean / c / f"{i}.png", smooth(1000 + 10 * ord(c) + i))
    assert main(["data", "check", str(clean), "--image-size", str(SIZE)]) == 0
    assert "validation: 2 images drawn stratified from train, seed 0; not grouped by patient" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # a flag out of its range: the parser exits with status 2
        main(["data", "check", str(clean), "--threshold", "2"])
    assert refused.value.code == 2 and "--threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_train_start_warns_about_leakage(planted, tmp_path: Path) -> None:
    root, *_ = planted
    with pytest.warns(MedtlWarning, match="pixel-identical images span splits"):
        medtl.train(data=str(root), image_size=32, cut="blocks.1", epochs=1, batch_size=32, threads=1,
                    out=str(tmp_path / "runs"), verbose=False)


def group_manifest(tmp_path: Path, column: str = "group", split: bool = False) -> Path:
    """30 patients with 3 images each (one class per patient); with ``split``, patient 0 straddles train and test."""
    rows = []
    for p in range(30):
        for k in range(3):
            name = f"img/p{p}_{k}.png"
            save(tmp_path / name, smooth(100 * p + k))
            where = "test" if p % 5 == 0 and not (p == 0 and k == 2) else "train"
            rows.append(f"{name},{'ab'[p % 2]},P{p}" + (f",{where}" if split else ""))
    path = tmp_path / "m.csv"
    path.write_text(f"path,label,{column}{',split' if split else ''}\n" + "\n".join(rows) + "\n")
    return path


def test_drawn_splits_are_group_disjoint(tmp_path: Path) -> None:
    csv = group_manifest(tmp_path)
    for seed in range(3):
        ds = load_dataset(str(csv), image_size=SIZE, seed=seed)
        groups = {s: set(ds.split(s).groups) for s in ("train", "val", "test")}
        assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"] and sum(len(g) for g in groups.values()) == 30
        assert "grouped by 'group'" in ds.source["splits"]["val"] and ds.source["group_by"] == "group"
        assert not check_data(ds).straddling_groups
    again = resplit(ds, (0.6, 0.2, 0.2), 1)  # resplits keep groups whole too
    groups = [set(again.split(s).groups) for s in ("train", "val", "test")]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    renamed = group_manifest(tmp_path / "renamed", column="patient")
    ds = load_dataset(str(renamed), image_size=SIZE, group_by="patient")
    assert not set(ds.train.groups) & set(ds.test.groups)
    with pytest.raises(DataError, match="no column 'subject' to group by"):
        load_dataset(str(renamed), image_size=SIZE, group_by="subject")
    with pytest.raises(ConfigError, match="group_by 'patient' names a column of a CSV manifest"):
        load_dataset("breastmnist", group_by="patient")


def test_groups_that_straddle_given_splits_are_reported(tmp_path: Path) -> None:
    ds = load_dataset(str(group_manifest(tmp_path, split=True)), image_size=SIZE)
    report = check_data(ds)
    assert list(report.straddling_groups) == ["P0"] and "test" in report.straddling_groups["P0"] and report.leaks
    assert any("group(s) have images in more than one split, e.g. 'P0'" in w for w in report.warnings())


def test_odd_modes_and_sizes_are_reported(tmp_path: Path) -> None:
    for c in "ab":
        for i in range(12):
            save(tmp_path / c / f"{i}.png", smooth(50 * ord(c) + i))
    save(tmp_path / "a" / "wide.png", np.zeros((24, 96), np.uint8) + 7)
    Image.fromarray(smooth(7)).convert("RGBA").save(tmp_path / "b" / "rgba.png")
    report = check_data(load_dataset(str(tmp_path), image_size=SIZE))
    odd = {reason: ids for reason, ids in report.odd_images.items()}
    assert any("aspect ratio" in r and ids == ["a/wide.png"] for r, ids in odd.items())
    assert any("rare mode RGBA" in r and any(i.endswith("b/rgba.png") for i in ids) for r, ids in odd.items())
    assert not report.leaks
