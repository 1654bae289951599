"""2D DICOM files read as a viewer shows them (modality LUT, VOI, MONOCHROME1, BitsStored, compressed syntaxes), the
2D/3D rule, patients grouped from the files, no PHI in any output, and one reader per format."""
from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST_ARGS, noise, save
from dicom_writer import PHI, picture, write_ct_series, write_dicom, xray_folder
from medtl.cli import main
from medtl.config import TrainConfig
from medtl.data import Reading, load_dataset
from medtl.data.readers import READERS, file_suffixes, read_image, reader_for
from medtl.errors import ConfigError, DataError, MedtlWarning
from medtl.resolve import load_data, reading_of, volume_of

pydicom = pytest.importorskip("pydicom")
RLE = "1.2.840.10008.1.2.5"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
TOP = 4095  # 12 bits stored


def twins(folder: Path, **kw) -> tuple[Path, Path]:
    """The same picture as MONOCHROME2 and as MONOCHROME1 (stored values inverted, window mirrored to match)."""
    stored = picture(3)
    slope, intercept = kw.pop("slope", 2.0), kw.pop("intercept", -100.0)
    lo, hi = intercept, TOP * slope + intercept  # the modality LUT's range: the M1 values mirror inside it
    window = kw.pop("window", (3000.0, 4000.0))
    m2 = write_dicom(folder / "m2.dcm", stored, slope=slope, intercept=intercept, window=window, **kw)
    mirrored = None if window is None else (lo + hi - window[0] + 1, window[1])  # DICOM LINEAR: centre - 0.5
    m1 = write_dicom(folder / "m1.dcm", TOP - stored, photometric="MONOCHROME1", slope=slope, intercept=intercept,
                     window=mirrored, **kw)
    return m2, m1


@pytest.mark.parametrize("modality", ["DX", "CR"])
@pytest.mark.parametrize("window", [None, "none"])
def test_a_monochrome1_file_and_its_monochrome2_twin_read_identically(tmp_path: Path, modality: str, window) -> None:
    m2, m1 = twins(tmp_path, modality=modality)
    assert not np.array_equal(pydicom.dcmread(m1).pixel_array, pydicom.dcmread(m2).pixel_array)  # stored inverted
    a, b = (read_image(p, reading=Reading(window=window)).array for p in (m2, m1))
    assert a.shape == (32, 32, 1) and a.dtype == np.float32 and 0 <= a.min() < a.max() <= 1
    assert np.array_equal(a, b)
    # higher values brighter: the picture's bright corner (high stored values in M2) is bright in both
    assert a[0, -1, 0] > a[0, 0, 0]


def test_the_pixel_pipeline_applies_rescale_window_voi_lut_and_bits_stored(tmp_path: Path) -> None:
    stored = picture(5)
    v = stored.astype(np.float64)
    # --window none: the full range of the 12 stored bits after rescale, the same for every image
    plain = write_dicom(tmp_path / "plain.dcm", stored, slope=2.0, intercept=-100.0)
    got = read_image(plain).array[..., 0]
    np.testing.assert_allclose(got, v / TOP, rtol=0, atol=1e-6)  # (2v - 100 + 100) / (2 * 4095): never v / 65535
    dim = write_dicom(tmp_path / "dim.dcm", stored // 2, slope=2.0, intercept=-100.0)
    np.testing.assert_allclose(read_image(dim).array[..., 0], (stored // 2) / TOP, atol=1e-6)  # not its own min-max
    # the file's window (DICOM LINEAR: centre - 0.5, width - 1), in rescaled units
    windowed = write_dicom(tmp_path / "win.dcm", stored, slope=2.0, intercept=-100.0, window=(2000.0, 1001.0))
    y = 2 * v - 100
    expected = np.clip((y - 1999.5) / 1000 + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(windowed).array[..., 0], expected, atol=1e-6)
    # --window CENTER,WIDTH replaces it; --window none ignores it
    np.testing.assert_allclose(read_image(windowed, reading=Reading(window=(4000.0, 8001.0))).array[..., 0],
                               np.clip((y - 3999.5) / 8000 + 0.5, 0, 1), atol=1e-6)
    np.testing.assert_allclose(read_image(windowed, reading=Reading(window="none")).array[..., 0], v / TOP, atol=1e-6)
    # a VOI LUT Sequence (preferred by the default), output over its 16 bits
    lut = (np.sqrt(np.arange(TOP + 1) / TOP) * 65535).astype(np.uint16)
    voi = write_dicom(tmp_path / "voi.dcm", stored, voi_lut=lut, window=(100.0, 10.0))
    np.testing.assert_allclose(read_image(voi).array[..., 0], lut[stored] / 65535, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLE, J2K_LOSSLESS])
def test_a_lossless_compressed_copy_reads_exactly_as_the_original(tmp_path: Path, syntax: str) -> None:
    pytest.importorskip("pylibjpeg")
    original = write_dicom(tmp_path / "raw.dcm", picture(7), modality="CR", photometric="MONOCHROME1",
                           window=(2000.0, 3000.0))
    copy = write_dicom(tmp_path / "packed.dcm", picture(7), modality="CR", photometric="MONOCHROME1",
                       window=(2000.0, 3000.0), compress=syntax)
    assert pydicom.dcmread(copy).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(read_image(copy).array, read_image(original).array)


def test_rgb_dicom_stays_8_bit_colour_and_bytes_read_like_the_file(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    path = write_dicom(tmp_path / "us.dcm", rgb, modality="US")
    got = read_image(path)
    assert got.array.dtype == np.uint8 and np.array_equal(got.array, rgb) and got.format == "16x16 DICOM-US"
    assert np.array_equal(read_image(path.read_bytes(), name="upload").array, rgb)  # an upload: sniffed as DICOM


def test_a_multi_frame_file_is_refused_never_its_first_frame(tmp_path: Path) -> None:
    cine = write_dicom(tmp_path / "data" / "b" / "cine.dcm", np.stack([picture(i) for i in range(4)]), modality="US")
    with pytest.raises(DataError, match=r"cine.dcm: a multi-frame DICOM file \(4 frames"):
        read_image(cine)
    for i in range(3):
        write_dicom(tmp_path / "data" / "a" / f"{i}.dcm", picture(i))
    with pytest.raises(DataError, match="multi-frame"):
        load_dataset(str(tmp_path / "data"), image_size=16)
    with pytest.raises(DataError, match="multi-frame"):  # forcing 2D does not make it one image either
        load_dataset(str(tmp_path / "data"), image_size=16, reading=Reading(dicom="2d"))


def test_dicom_x_rays_in_class_folders_load_as_2d_images_and_say_by_which_rule(tmp_path: Path, caplog) -> None:
    root = xray_folder(tmp_path / "xr")
    with caplog.at_level(logging.INFO, logger="medtl"), pytest.warns(MedtlWarning, match="not be de-identified"):
        data = load_dataset(str(root), image_size=16)
    assert not data.is_volume and data.image_shape == (1, 16, 16)
    assert "DICOM: 24 file(s) read as 2D images, 0 folder(s) as volumes, by the rule" in caplog.text
    assert data.source["readers"] == ["dicom"]
    assert data.train.formats[0].endswith(("DICOM-DX", "DICOM-CR"))


def test_x_rays_each_in_a_folder_of_its_own_are_images_not_16_cubed_volumes(tmp_path: Path) -> None:
    """The old misreading: following the advice 'put each series in a folder of its own' made every X-ray (with
    ImagePositionPatient, as many DX files carry) a 16 x 16 x 16 volume; main reads this folder as (1, 16, 16, 16)."""
    for c, label in enumerate(("a", "b")):
        for i in range(6):
            write_dicom(tmp_path / "xr" / label / f"case{i}" / "image.dcm", picture(10 * c + i, bright=bool(c)),
                        position=(0.0, 0.0, 0.0))
    data = load_dataset(str(tmp_path / "xr"), image_size=16)
    assert not data.is_volume and data.image_shape == (1, 16, 16)


def test_a_ct_series_beside_x_rays_is_read_as_a_volume_by_the_rule_and_refused_in_a_2d_set(tmp_path: Path) -> None:
    root = xray_folder(tmp_path / "xr", per_class=4, patients=2)
    write_ct_series(root / "abnormal" / "ct")
    with pytest.raises(DataError, match=r"mixes 2D images .* with volumes \('abnormal/ct'\)"):
        load_dataset(str(root), image_size=16)
    # alone, series are volumes (one SeriesInstanceUID, slices along one normal)
    for c in ("a", "b"):
        for k in range(2):
            write_ct_series(tmp_path / "ct" / c / f"s{k}")
    volumes = load_dataset(str(tmp_path / "ct"), image_size=8, split=(0.5, 0.0, 0.5))
    assert volumes.is_volume and volumes.image_shape == (1, 8, 8, 8)
    # a CT slice that is no part of a series fits neither kind: refused naming it; forcing 2D reads it as an image
    write_dicom(root / "normal" / "lone.dcm", picture(9), modality="CT")
    (root / "abnormal" / "ct").rename(tmp_path / "moved")
    with pytest.raises(DataError, match=r"neither 2D images nor slices of a volume.*lone.dcm \(CT\).*--dicom 2d"):
        load_dataset(str(root), image_size=16)
    assert not load_dataset(str(root), image_size=16, reading=Reading(dicom="2d")).is_volume


def test_dicom_3d_forces_every_folder_to_a_series_and_volume_implies_it(tmp_path: Path) -> None:
    for c in ("a", "b"):
        for k in range(3):
            write_ct_series(tmp_path / "ct" / c / f"s{k}", slices=1)  # one slice: no volume by the rule
    with pytest.raises(DataError, match="neither 2D images nor slices of a volume"):
        load_dataset(str(tmp_path / "ct"), image_size=8)
    cfg = TrainConfig(data=str(tmp_path / "ct"), image_size=8, volume="acs")
    assert reading_of(cfg).dicom == "3d" and reading_of(TrainConfig(dicom="2d", volume="acs")).dicom == "2d"
    assert load_dataset(str(tmp_path / "ct"), image_size=8, reading=reading_of(cfg)).is_volume
    assert not load_dataset(str(tmp_path / "ct"), image_size=8, reading=Reading(dicom="2d")).is_volume
    with pytest.raises(ConfigError, match="dicom"):
        TrainConfig.from_dict({"dicom": "4d"}).validate()


def test_window_applies_to_2d_dicom_runs_and_is_still_refused_for_png(tmp_path: Path) -> None:
    root = xray_folder(tmp_path / "xr", per_class=6, patients=3)
    cfg = TrainConfig(data=str(root), image_size=16, window="none", batch_size=2)
    data = load_data(cfg)
    assert volume_of(cfg, data) is None  # accepted: the window reads the DICOM files
    default = load_data(TrainConfig(data=str(root), image_size=16, window="1000,500", batch_size=2))
    assert not torch.equal(data.train.images, default.train.images)
    for c in ("a", "b"):
        for i in range(5):
            save(tmp_path / "png" / c / f"{i}.png", noise(10 * ord(c) + i))
    png = TrainConfig(data=str(tmp_path / "png"), image_size=16, window="none", batch_size=2)
    with pytest.raises(ConfigError, match="--window apply to volumes"):
        volume_of(png, load_data(png))


def test_group_by_patient_id_draws_patient_disjoint_splits_from_hashed_ids(tmp_path: Path) -> None:
    root = xray_folder(tmp_path / "xr", per_class=12, patients=6)
    data = load_dataset(str(root), image_size=16, group_by="PatientID", seed=3)
    patient = {}
    for i in range(2):
        for k in range(12):
            patient[f"{('normal', 'abnormal')[i]}/img{k:02d}.dcm"] = f"PHIPID-{i}-{k % 6}"
    sides = {}
    for split in ("train", "val", "test"):
        for image_id, group in zip(data.split(split).ids, data.split(split).groups):
            assert "PHIPID" not in group and group.startswith("PatientID:")
            sides.setdefault(patient[image_id], set()).add(split)
            sides.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert len(data.val) and len(data.test) and "grouped by 'PatientID'" in data.source["split_note"]
    again = load_dataset(str(root), image_size=16, group_by="PatientID", seed=3)
    assert again.test.ids == data.test.ids  # the same files give the same hashed ids and splits
    with pytest.raises(DataError, match="neither a column of a CSV manifest nor a DICOM attribute"):
        load_dataset(str(root), image_size=16, group_by="PatientIdd")


def test_data_check_reports_patients_straddling_given_splits_without_their_ids(tmp_path: Path, capsys) -> None:
    for s, split in enumerate(("train", "val", "test")):
        for c in ("a", "b"):
            for i in range(3):
                write_dicom(tmp_path / "d" / split / c / f"{i}.dcm", picture(100 * s + 10 * ord(c) + i),
                            patient_id=f"PHIPID-{c}{i}")
    out = tmp_path / "check"
    status = main(["data", "check", str(tmp_path / "d"), "--group-by", "PatientID", "--out", str(out)])
    assert status == 1
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "6 group(s) have images in more than one split" in printed and "PatientID:" in printed
    assert "18 of 18 DICOM file(s) may not be de-identified (18 with a non-empty PatientName" in captured.err
    written = (out / "leakage.json").read_text()
    assert '"straddling_groups"' in written
    for text in (printed, written):
        assert "PHIPID" not in text and not any(v in text for v in PHI.values())


def test_a_csv_of_dicom_files_takes_a_column_or_an_attribute_as_group(tmp_path: Path) -> None:
    rows = []
    for i in range(24):
        write_dicom(tmp_path / f"{i}.dcm", picture(i, bright=bool(i % 2)), patient_id=f"PHIPID-{i // 2}")
        rows.append([f"{i}.dcm", "ab"[i % 2], f"g{i // 2}"])
    path = tmp_path / "m.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "group"], *rows])
    by_column = load_dataset(str(path), image_size=16, group_by="group")
    assert set(by_column.train.groups) <= {f"g{k}" for k in range(12)}
    by_attribute = load_dataset(str(path), image_size=16, group_by="PatientID")
    assert all(g.startswith("PatientID:") for g in by_attribute.train.groups)


def test_every_supported_suffix_resolves_to_exactly_one_reader(tmp_path: Path) -> None:
    suffixes = {s for r in READERS for s in r.suffixes}
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".npz"} <= suffixes
    for suffix in sorted(suffixes):
        for name in (f"x{suffix}", f"X{suffix.upper()}"):
            claimed = [r.name for r in READERS if r.accepts(tmp_path / name)]
            assert len(claimed) == 1, (name, claimed)
            assert reader_for(tmp_path / name).name == claimed[0]
    assert reader_for(tmp_path / "notes.txt") is None
    assert reader_for(tmp_path).name == "dicom-series"  # a folder: the DICOM rule decides when it is one
    marked = tmp_path / "IM0001"  # DICOM without a suffix, by the DICM marker
    write_dicom(marked, picture(1))
    assert reader_for(marked).name == "dicom"
    assert ".dcm" in file_suffixes(("image",)) and ".nii.gz" in file_suffixes(("volume",))


@pytest.mark.slow
def test_train_check_predict_evaluate_on_dicom_x_rays_write_no_phi_and_twins_score_alike(tmp_path: Path) -> None:
    root = xray_folder(tmp_path / "xr", per_class=12, patients=6)
    runs, check = tmp_path / "runs", tmp_path / "check"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedtlWarning)
        assert main(["train", *FAST_ARGS, "--data", str(root), "--group-by", "PatientID", "--out", str(runs),
                     "--name", "dx", "--report", "--batch-size", "8", "--split", "0.5,0.25,0.25"]) == 0
        run = next(runs.iterdir())  # <timestamp>-dx
        assert main(["data", "check", str(root), "--group-by", "PatientID", "--out", str(check)]) in (0, 1)
        m2, m1 = twins(tmp_path / "twins", modality="DX")
        predictions = tmp_path / "pred" / "p.csv"
        assert main(["predict", str(run), str(m2), str(m1), str(root / "normal"), "--out", str(predictions),
                     "--quiet"]) == 0
        assert main(["evaluate", str(run), "--data", str(root), "--out", str(tmp_path / "eval")]) == 0
    with predictions.open() as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert len(rows) >= 2 + 12 - 1 and rows["m1.dcm"]["prob_normal"] == rows["m2.dcm"]["prob_normal"]
    written = [p for d in (runs, check, predictions.parent, tmp_path / "eval") for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written) and any(p.name == "config.yaml" for p in written)
    planted = [*PHI.values(), "PHIPID", "Phiname", "19230417"]
    for path in written:
        data = path.read_bytes()
        for text in planted:
            assert text.encode() not in data, f"{text!r} found in {path}"
