"""Volumes: 2D networks made 3D (i3d, acs, 2.5d) with their 2D cut names, MedMNIST 3D and volume files (NIfTI, DICOM
series) read into tensors, batched 3D augmentation, and the errors for volumes where images are expected."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, cli_args
from medtl.backbones import Trunk, backbone_cuts, create_backbone, find_cut
from medtl.analysis.autocut import estimate_cut
from medtl.analysis.reuse import reuse
from medtl.backbones.volume import VOLUME_MODES, to_volume
from medtl.cli import main
from medtl.config import TrainConfig
from medtl.data import Preprocess, VolumeReading, load_dataset
from medtl.data.volumes import read_dicom_series
from medtl.errors import ConfigError, DataError, MedtlWarning
from medtl.evaluation import count_parameters
from medtl.model import build_classifier

TINY = dict(backbone="efficientnet_lite0", cut="blocks.1", image_size=16, epochs=1, threads=1, report=False,
            batch_size=8, bootstrap=0)


def tiny_volumes(path: Path, size: int = 12) -> Path:
    """A MedMNIST-layout ``.npz`` of 16/8/8 random ``size``-cubed uint8 volumes, labels alternating; class 1 has a
    bright cube inside."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        labels = np.arange(n) % 2
        volumes = rng.integers(0, 128, (n, size, size, size), np.uint8)
        volumes[labels == 1, 3:9, 3:9, 3:9] = 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = volumes, labels[:, None]
    np.savez(path, **arrays)
    return path


def trunk(name: str, cut: str) -> Trunk:
    model, _ = create_backbone(name, None, 1)
    for m in model.modules():  # BatchNorm statistics away from 0/1, so that a mistake in them shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return Trunk(model, find_cut(backbone_cuts(model), cut)).eval()


@pytest.mark.parametrize("name, cut", [("resnet18", "layer2"), ("efficientnet_lite0", "blocks.3"),
                                       ("efficientnet_b0", "blocks.2"), ("densenet121", "denseblock2")])
def test_i3d_of_a_depth_constant_volume_is_the_2d_response_on_every_slice(name: str, cut: str) -> None:
    torch.manual_seed(0)
    flat = trunk(name, cut)
    image = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = flat(image)
        volume = image.unsqueeze(2).expand(-1, -1, 32, -1, -1).contiguous()
        got = to_volume(copy.deepcopy(flat), "i3d")(volume)
    assert got.shape[2] > 1  # several slices left, edge ones included
    assert torch.allclose(got, expected.unsqueeze(2).expand_as(got), atol=1e-4 * expected.abs().max())
    with torch.no_grad():  # and a conversion that is not I3D does not reproduce it (the check can fail)
        other = to_volume(copy.deepcopy(flat), "acs")(volume)
    assert not torch.allclose(other, expected.unsqueeze(2).expand_as(other), atol=1e-2 * expected.abs().max())


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "densenet121", "efficientnet_lite0", "efficientnet_b0"])
def test_acs_and_25d_keep_the_2d_parameters_exactly_and_the_module_names(name: str) -> None:
    model, _ = create_backbone(name, None, 1)
    whole = Trunk(model, backbone_cuts(model)[-1])
    names = {k: tuple(v.shape) for k, v in whole.state_dict().items()}
    for mode in ("acs", "2.5d"):
        converted = to_volume(copy.deepcopy(whole), mode)
        assert {k: tuple(v.shape) for k, v in converted.state_dict().items()} == names
        assert count_parameters(converted) == count_parameters(whole)
    i3d = to_volume(copy.deepcopy(whole), "i3d")
    assert i3d.state_dict().keys() == names.keys() and count_parameters(i3d) > count_parameters(whole)


def test_acs_splits_the_output_channels_across_three_views() -> None:
    net = to_volume(torch.nn.Sequential(torch.nn.Conv2d(2, 6, 3, padding=1, bias=False)), "acs")
    x = torch.zeros(1, 2, 7, 7, 7)
    x[0, :, 3, 3, 3] = 1  # an impulse: each output channel spreads it over its view's kernel only
    with torch.no_grad():
        y = net(x)[0] != 0
    extent = [tuple(int(y[c].any(dim=tuple(d for d in range(3) if d != axis)).sum()) for axis in range(3))
              for c in range(6)]  # (depth, height, width) extent of each channel's response
    assert extent == [(1, 3, 3)] * 2 + [(3, 1, 3)] * 2 + [(3, 3, 1)] * 2  # axial, coronal, sagittal


def test_a_classifier_on_volumes_keeps_the_2d_cut_names_and_reloads(tmp_path: Path) -> None:
    for mode in VOLUME_MODES:
        model = build_classifier("resnet18", 2, cut="layer2.0", weights=None, in_chans=1, image_size=16, volume=mode)
        assert model.spec.cut == "layer2.0" and model.spec.volume == mode
        assert model(torch.zeros(2, 1, 16, 16, 16)).shape == (2, 2)
    assert "volume" not in build_classifier("resnet18", 2, cut="layer1", weights=None, image_size=16).spec.to_dict()


def test_adrenalmnist3d_is_built_in_and_md5_verified() -> None:
    data = load_dataset("adrenalmnist3d", download=False)
    assert data.source["kind"] == "builtin" and data.is_volume
    assert data.image_shape == (1, 28, 28, 28) and [len(data.split(s)) for s in ("train", "val", "test")] == \
        [1188, 98, 298]
    assert data.class_counts("test") == [229, 69]


def test_3d_names_take_the_published_sizes_only() -> None:
    with pytest.raises(ConfigError, match="size 128 for adrenalmnist3d; use one of 28, 64"):
        load_dataset("adrenalmnist3d_128")


def test_volume_augmentation_is_batched_seeded_and_flips_only_the_chosen_axes() -> None:
    x = torch.rand(4, 1, 10, 12, 14)
    pre = Preprocess(8, (0.5,), (0.5,), augment=True, scale=(1.0, 1.0), flip_axes=(2,))
    a = pre(x, torch.Generator().manual_seed(1))
    b = pre(x, torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 8, 8, 8) and torch.equal(a, b)
    plain = Preprocess(8, (0.5,), (0.5,))(x)
    # the whole volume (scale 1): each output is the plain resize, or it mirrored along depth only
    for got, ref in zip(a, plain):
        assert torch.allclose(got, ref, atol=1e-5) or torch.allclose(got, ref.flip(1), atol=1e-5)
    assert any(not torch.allclose(g, r, atol=1e-5) for g, r in zip(a, plain))


# ---- volume files ----------------------------------------------------------------------------------------------

def write_series(folder: Path, volume: np.ndarray, *, spacing: float = 2.5, shuffle: bool = True, uid: str = "1.2.3",
                 drop: int | None = None, positions: list[float] | None = None) -> Path:
    """A DICOM series of ``volume`` (D, H, W; int16), one file per slice, written in shuffled order with shuffled
    InstanceNumbers, so that only ImagePositionPatient gives the order; CT rescale 1, -1024."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(volume)) if shuffle else np.arange(len(volume))
    numbers = rng.permutation(len(volume)) + 1
    for k, z in enumerate(order):
        if z == drop:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"f{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.Modality = CTImageStorage, \
            meta.MediaStorageSOPInstanceUID, uid, "CT"
        ds.InstanceNumber = int(numbers[k])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, positions[z] if positions else -100.0 + spacing * z]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], spacing
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = volume[z].astype(np.int16).tobytes()
        ds.save_as(folder / f"f{k:03d}.dcm", enforce_file_format=True)
    return folder


def ramp(depth: int = 6, size: int = 8) -> np.ndarray:
    """Slice z holds the value 1024 + 100 z (0 + 100 z HU after the rescale): the order shows in the values."""
    return (1024 + 100 * np.arange(depth)[:, None, None] + np.zeros((depth, size, size))).astype(np.int16)


def test_a_dicom_series_is_ordered_by_position_not_by_file_or_instance_number(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "s", ramp())
    volume, spacing, kind = read_dicom_series(folder)
    assert volume[:, 0, 0].tolist() == [100.0 * z for z in range(6)]  # rescaled to HU, in position order
    assert spacing == (2.5, 0.8, 0.8) and kind == "DICOM CT"


@pytest.mark.parametrize("problem, message", [("two series", "2 DICOM series"), ("missing", "missing slices"),
                                              ("uneven", "uneven slice spacing")])
def test_a_broken_dicom_series_is_refused_naming_the_folder(tmp_path: Path, problem: str, message: str) -> None:
    folder = tmp_path / "series"
    if problem == "two series":
        write_series(folder, ramp())
        write_series(folder / "..", ramp()[:1], uid="9.9.9", shuffle=False)  # a file of another series beside them
        (folder.parent / "f000.dcm").rename(folder / "other.dcm")
    elif problem == "missing":
        write_series(folder, ramp(), drop=3)
    else:
        write_series(folder, ramp(), positions=[0, 2.5, 5, 7.5, 9, 12.5])
    with pytest.raises(DataError, match=message) as e:
        read_dicom_series(folder)
    assert "series" in str(e.value) and str(folder) in str(e.value)


def write_nifti(path: Path, volume: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> Path:
    nib = pytest.importorskip("nibabel")
    image = nib.Nifti1Image(volume.astype(np.float32), np.diag([*zooms, 1.0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def nifti_folder(root: Path, size: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i in range(6):
            v = rng.normal(0, 1, (size, size, size))
            if label == "b":
                v[2:7, 2:7, 2:7] += 3
            write_nifti(root / label / f"case{i}.nii.gz", v)
    return root


def test_a_folder_of_nifti_and_dicom_volumes_loads_as_volumes(tmp_path: Path) -> None:
    root = nifti_folder(tmp_path / "nii")
    data = load_dataset(str(root), image_size=8, reading=VolumeReading(window=(0.0, 4.0)))
    assert data.is_volume and data.image_shape == (1, 8, 8, 8) and data.classes == ["a", "b"]
    assert data.train.images.dtype == torch.float32 and 0 <= data.train.images.min() <= data.train.images.max() <= 1
    assert all(i.endswith(".nii.gz") for i in data.train.ids)
    for label in ("a", "b"):
        for i in range(4):
            write_series(tmp_path / "dcm" / label / f"patient{i}", ramp(6, 8) + (300 if label == "b" else 0))
    series = load_dataset(str(tmp_path / "dcm"), image_size=6, reading=VolumeReading(window=(200.0, 1000.0)))
    assert series.is_volume and sorted(series.train.ids + series.val.ids + series.test.ids) == \
        sorted(f"{label}/patient{i}" for label in "ab" for i in range(4))


def test_a_csv_of_volumes_reads_nifti_files_and_series_folders_and_names_an_empty_folder(tmp_path: Path) -> None:
    nifti_folder(tmp_path / "nii")
    write_series(tmp_path / "dcm" / "p0", ramp(6, 8))
    write_series(tmp_path / "dcm" / "p1", ramp(6, 8) + 300)
    rows = [f"nii/{label}/case{i}.nii.gz,{label}" for label in "ab" for i in range(6)] + ["dcm/p0,a", "dcm/p1,b"]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(MedtlWarning, match="2 different shapes .* each is resized to 6x6x6"):
        data = load_dataset(str(tmp_path / "m.csv"), image_size=6)
    assert data.is_volume and len(data.train) + len(data.val) + len(data.test) == 14
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows + ["empty,a"]) + "\n")
    with pytest.raises(DataError, match=r"empty: no DICOM files"):
        load_dataset(str(tmp_path / "m.csv"), image_size=6)


def test_a_4d_nifti_and_a_volume_among_images_are_refused_naming_the_file(tmp_path: Path) -> None:
    root = nifti_folder(tmp_path / "nii")
    write_nifti(root / "a" / "time.nii", np.zeros((4, 4, 4, 3)))
    with pytest.raises(DataError, match=r"time\.nii: a NIfTI volume of 4 dimensions"):
        load_dataset(str(root), image_size=8)
    (root / "a" / "time.nii").unlink()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a" / "slice.png")
    with pytest.raises(DataError, match=r"mixes 2D images \('a/slice.png'\) with volumes"):
        load_dataset(str(root), image_size=8)


# ---- end to end -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_on_volumes_with_every_conversion_reports_3d_cost(tmp_path: Path, caplog) -> None:
    npz = tiny_volumes(tmp_path / "vol.npz")
    for mode in VOLUME_MODES:
        out = tmp_path / mode
        assert main(["train", *cli_args(data=str(npz), out=str(out), volume=mode, **TINY), "--quiet"]) == 0
        run = next(out.iterdir())
        spec = json.loads((run / "model.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert spec["volume"] == mode and spec["cut"] == "blocks.1"
        assert metrics["macs"] > 0 and 0 <= metrics["test_auroc"] <= 1
    assert "volumes: the 2D network" not in caplog.text  # --volume was given each time
    # the three conversions' runs saw the same volumes: an ensemble averages them and times each member on volumes
    runs = [str(next((tmp_path / mode).iterdir())) for mode in VOLUME_MODES]
    assert main(["ensemble", *runs, "--out", str(tmp_path / "ens"), "--bootstrap", "0", "--no-report"]) == 0
    cost = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert len(cost["member_latency_ms"]) == 3 and cost["cpu_latency_ms"] > 0


def test_cut_auto_scores_the_3d_features_of_every_cut(tmp_path: Path) -> None:
    data = load_dataset(str(tiny_volumes(tmp_path / "vol.npz")))
    auto = estimate_cut("efficientnet_lite0", data, 16, volume="acs", levels=("block",))
    assert [s.cut for s in auto.scores][:3] == ["blocks.0", "blocks.1", "blocks.2"]
    assert auto.pick in [s.cut for s in auto.scores] and all(0 <= s.score <= 1 for s in auto.scores)


@pytest.mark.slow
def test_svcca_gradcam_and_onnx_of_a_3d_run_are_3d(tmp_path: Path) -> None:
    npz = tiny_volumes(tmp_path / "vol.npz")
    assert main(["train", *cli_args(data=str(npz), out=str(tmp_path / "r"), **TINY), "--quiet"]) == 0
    run = next((tmp_path / "r").iterdir())
    result = reuse(run, images=8)
    assert [c.cut.name for c in result.cuts][-1] == "blocks.1"
    assert all(len(c.shape) == 4 and "depth" in c.row() for c in result.cuts)  # (C, D, H, W) feature maps
    assert "SVCCA mean" in result.table()
    # Grad-CAM: a 3D map per volume at the model's size, drawn as its three maximum projections
    assert main(["explain", str(run), "--images", "2", "--out", str(tmp_path / "cam")]) == 0
    arrays = np.load(tmp_path / "cam" / "gradcam.npz")
    assert arrays["maps_0"].shape == arrays["images_0"].shape == (2, 16, 16, 16)
    assert (tmp_path / "cam" / "gradcam.png").stat().st_size > 10_000
    # ONNX: an NCDHW graph that reproduces the model on the run's test volumes; predict on files says what to use
    assert main(["export", str(run), "--out", str(tmp_path / "onnx")]) == 0
    info = json.loads((tmp_path / "onnx" / "model.onnx.json").read_text())
    assert info["input"]["layout"] == "NCDHW" and info["input"]["shape"] == ["batch", 1, 16, 16, 16]
    onnx_file = str(tmp_path / "onnx" / "model.onnx")
    assert main(["predict", onnx_file, str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2


@pytest.mark.slow
def test_volume_data_without_volume_defaults_to_acs_and_says_so(tmp_path: Path, caplog) -> None:
    npz = tiny_volumes(tmp_path / "vol.npz")
    with caplog.at_level("INFO", logger="medtl"):
        assert main(["train", *cli_args(data=str(npz), out=str(tmp_path / "r"), **TINY)]) == 0
    assert "--volume acs (the default" in caplog.text
    run = next((tmp_path / "r").iterdir())
    assert TrainConfig.load(run / "config.yaml").volume == "acs"


def test_volume_options_on_2d_images_and_images_on_a_volume_model_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["train", *cli_args(volume="acs", out=str(tmp_path), **TINY), "--quiet"]) == 2
    assert "--volume apply to volumes, but breastmnist holds 2D images 1x28x28" in capsys.readouterr().err


def test_a_2d_run_writes_no_volume_keys(tmp_path: Path) -> None:
    cfg = TrainConfig()
    assert "volume" not in cfg.to_yaml() and "window" not in cfg.identity() and "flip_axes" not in cfg.to_yaml()
    assert (ROOT / "medtl" / "data" / "builtin" / "adrenalmnist3d.npz").is_file()
