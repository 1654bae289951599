"""Tests for medtl.data: MedMNIST and built-in loading, folders, CSV manifests, splits and batched preprocessing."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import medmnist
import medmnist.info
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import save
from PIL import Image

from medtl.data import ImageDataset, Preprocess, Split, load_dataset, read_image
from medtl.data.medmnist import BUILTIN
from medtl.errors import ConfigError, DataError
from medtl.config import TrainConfig
from medtl.resolve import load_data

BREAST_MD5 = "750601b1f35ba3300ea97c75c52ff8f6"
BREAST_NPZ = BUILTIN["breastmnist", 28]


@pytest.fixture(autouse=True)
def medmnist_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point medmnist's ~/.medmnist at an empty folder so that no test depends on (or writes to) the real one."""
    home = tmp_path / "medmnist_home"
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(home))
    return home


def constant(value: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.full(size, value, np.uint8)


# --- MedMNIST and the built-in copy ------------------------------------------------------------------------------


def test_builtin_breastmnist_matches_the_official_file() -> None:
    assert hashlib.md5(BREAST_NPZ.read_bytes()).hexdigest() == BREAST_MD5
    ds = load_dataset("breastmnist", download=False)
    assert (ds.name, ds.task, ds.classes) == ("breastmnist", "binary", ["malignant", "normal, benign"])
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [546, 78, 156]
    assert ds.image_shape == (1, 28, 28) and ds.in_chans == 1 and ds.num_classes == 2
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.source["kind"] == "builtin" and ds.source["md5"] == BREAST_MD5
    assert ds.source["license"] == "CC BY 4.0" and "MedMNIST v2" in ds.source["citation"]
    with np.load(BREAST_NPZ) as npz:
        for s in ("train", "val", "test"):
            assert np.array_equal(ds.split(s).labels.numpy(), npz[f"{s}_labels"].ravel())
            assert np.array_equal(ds.split(s).images[:, 0].numpy(), npz[f"{s}_images"])
    assert ds.class_counts() == [147, 399] and ds.class_counts("test") == [42, 114]


def test_a_file_in_root_is_preferred_to_the_builtin(tmp_path: Path) -> None:
    shutil.copy(BREAST_NPZ, tmp_path / "breastmnist.npz")
    ds = load_dataset("BreastMNIST", root=str(tmp_path), download=False)
    assert ds.source["kind"] == "medmnist" and ds.source["path"] == str(tmp_path / "breastmnist.npz")


def test_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'breastmnist'"):
        load_dataset("breastmnst")
    with pytest.raises(ConfigError, match="Did you mean 'adrenalmnist3d'"):
        load_dataset("adrenalmnst3d")
    with pytest.raises(ConfigError, match="size 32"):
        load_dataset("breastmnist_32")


@pytest.mark.parametrize("spec", ["pneumoniamnist", "breastmnist_64"])
def test_missing_file_offline_says_what_to_download_and_where(spec: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    flag, _, size = spec.partition("_")
    url = medmnist.INFO[flag][f"url_{size}" if size else "url"]
    with pytest.raises(DataError) as info:
        load_dataset(spec, root=str(root), download=False)
    message = str(info.value)
    assert f"{spec}.npz" in message and url in message and str(root) in message


def test_download_goes_through_medmnist_into_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for medmnist's downloader "fetches" the BreastMNIST bytes as pneumoniamnist.npz."""
    calls = []

    def fake_download(split: str, root: str, download: bool, size: int) -> None:
        calls.append((split, root, download, size))
        shutil.copy(BREAST_NPZ, Path(root) / "pneumoniamnist.npz")

    monkeypatch.setattr(medmnist, "PneumoniaMNIST", fake_download)
    monkeypatch.setitem(medmnist.INFO["pneumoniamnist"], "MD5", BREAST_MD5)
    root = tmp_path / "new" / "root"
    ds = load_dataset("pneumoniamnist", root=str(root))
    assert calls == [("train", str(root), True, 28)] and ds.source["kind"] == "medmnist" and len(ds.train) == 546
    assert ds.classes == ["normal", "pneumonia"]

    def offline(**kwargs: object) -> None:
        raise RuntimeError("Automatic download failed!")

    monkeypatch.setattr(medmnist, "PneumoniaMNIST", offline)
    with pytest.raises(DataError, match="could not be downloaded.*pneumoniamnist_64.npz"):
        load_dataset("pneumoniamnist_64", root=str(root))


def test_corrupt_file_fails_the_md5_check(tmp_path: Path) -> None:
    data = bytearray(BREAST_NPZ.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "breastmnist.npz").write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"md5.*{BREAST_MD5}"):
        load_dataset("breastmnist", root=str(tmp_path), download=False)


def test_npz_path_infers_the_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 12), ("val", 3), ("test", 6)):
        arrays[f"{s}_images"] = rng.integers(0, 256, (n, 10, 10, 3), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    np.savez(tmp_path / "multi.npz", **arrays)
    ds = load_dataset(str(tmp_path / "multi.npz"))
    assert (ds.task, ds.classes, ds.image_shape) == ("multiclass", ["0", "1", "2"], (3, 10, 10))
    assert ds.source["kind"] == "npz"
    assert torch.equal(ds.val.images, torch.from_numpy(arrays["val_images"]).permute(0, 3, 1, 2))
    for s in ("train", "val", "test"):
        arrays[f"{s}_labels"] = rng.integers(0, 2, (len(arrays[f"{s}_images"]), 4)).astype(np.uint8)
    np.savez(tmp_path / "multilabel.npz", **arrays)
    ds = load_dataset(str(tmp_path / "multilabel.npz"))
    assert ds.task == "multilabel" and ds.num_classes == 4 and ds.train.labels.dtype == torch.float32
    assert ds.class_counts() == arrays["train_labels"].sum(0).tolist()
    del arrays["test_labels"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(DataError, match="test_labels"):
        load_dataset(str(tmp_path / "broken.npz"))


# --- reading single images ---------------------------------------------------------------------------------------


def test_read_image_modes(tmp_path: Path) -> None:
    grey = read_image(save(tmp_path / "l.png", constant(7, (5, 6))))
    assert grey.shape == (5, 6, 1) and grey.dtype == np.uint8 and (grey == 7).all()
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    assert read_image(save(tmp_path / "rgb.jpg", rgb)).shape == (4, 4, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    out = read_image(save(tmp_path / "rgba.png", rgba))
    assert out.shape == (4, 4, 3) and (out[:2] == 200).all() and (out[2:] == 0).all()
    palette = read_image(save(tmp_path / "p.gif", rgb, mode="P"))
    assert palette.shape == (4, 4, 3) and palette.dtype == np.uint8
    assert read_image(save(tmp_path / "one.bmp", constant(255), mode="1")).shape == (8, 8, 1)


def test_16_bit_images_keep_their_precision(tmp_path: Path) -> None:
    values = (np.arange(64 * 64, dtype=np.uint32) * 7 % 65536).astype(np.uint16).reshape(64, 64)
    for name in ("g16.png", "g16.tif"):
        out = read_image(save(tmp_path / name, values))
        assert out.dtype == np.float32 and out.shape == (64, 64, 1)
        np.testing.assert_allclose(out[..., 0], values / 65535, atol=1e-7)
    as_int32 = read_image(save(tmp_path / "i32.tif", values.astype(np.int32)))  # PIL mode "I"
    np.testing.assert_allclose(as_int32[..., 0], values / 65535, atol=1e-7)


def test_unreadable_images_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)
    floats = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(floats)
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        read_image(floats)


# --- image folders -----------------------------------------------------------------------------------------------


def make_flat_folder(root: Path, per_class: int = 20, classes: tuple[str, ...] = ("a", "b", "c")) -> Path:
    """``root/<class>/*.png``, each image a distinct constant so that images can be told apart."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i}.png", constant(c * per_class + i))
    return root


def test_folder_without_split_dirs_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_flat_folder(tmp_path / "flat")
    ds = load_dataset(str(root), image_size=8, seed=1)
    assert ds.task == "multiclass" and ds.classes == ["a", "b", "c"] and ds.source["kind"] == "folder"
    assert [ds.class_counts(s) for s in ("train", "val", "test")] == [[14] * 3, [2] * 3, [4] * 3]
    values = {s: set(ds.split(s).images[:, 0, 0, 0].tolist()) for s in ("train", "val", "test")}
    assert set.union(*values.values()) == set(range(60)) and sum(map(len, values.values())) == 60
    again = load_dataset(str(root), image_size=8, seed=1)
    other = load_dataset(str(root), image_size=8, seed=2)
    assert torch.equal(again.test.images, ds.test.images) and torch.equal(again.train.labels, ds.train.labels)
    assert not torch.equal(other.test.images, ds.test.images)
    # Labels follow the images: image value // 20 is the class index.
    assert torch.equal(ds.train.images[:, 0, 0, 0].long() // 20, ds.train.labels)


def test_split_seed_fixes_the_drawn_splits_across_seeds(tmp_path: Path) -> None:
    """--split-seed: runs of several seeds share one drawn validation/test split (so they can be ensembled); without it
    the split follows --seed, and a config that leaves it unset keeps its saved form and fingerprint."""
    root = str(make_flat_folder(tmp_path / "flat"))
    fixed = [load_data(TrainConfig(data=root, image_size=8, seed=s, split_seed=7)) for s in (0, 1)]
    own = [load_data(TrainConfig(data=root, image_size=8, seed=s)) for s in (7, 1)]
    for split in ("train", "val", "test"):
        assert torch.equal(fixed[0].split(split).images, fixed[1].split(split).images)
        assert torch.equal(fixed[0].split(split).images, own[0].split(split).images)  # split_seed 7 = seed 7's split
    assert not torch.equal(fixed[1].val.images, own[1].val.images)
    assert "split_seed" not in TrainConfig().to_yaml() and "split_seed: 7" in TrainConfig(split_seed=7).to_yaml()
    default = TrainConfig().fingerprint()
    assert TrainConfig(split_seed=None).fingerprint() == default != TrainConfig(split_seed=0).fingerprint()


def test_folder_with_split_dirs_mixed_modes_and_sizes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for c in ("benign", "malignant"):
            for i in range(n):
                save(root / split / c / f"g{i}.png", rng.integers(0, 256, (20 + i, 30), dtype=np.uint8))
        save(root / split / "benign" / "colour.JPG", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        save(root / split / "malignant" / "alpha.png", rng.integers(0, 256, (16, 16, 4), dtype=np.uint8))
    (root / "train" / "benign" / ".hidden.png").write_bytes(b"not an image")
    (root / "train" / "benign" / "notes.txt").write_text("ignored")
    ds = load_dataset(str(root), image_size=24)
    assert ds.classes == ["benign", "malignant"] and ds.task == "binary"
    assert ds.image_shape == (3, 24, 24) and ds.train.images.dtype == torch.uint8
    assert len(ds.test) == 8 and len(ds.train) + len(ds.val) == 18 and len(ds.val) > 0
    # Grey images are replicated to 3 equal channels.
    grey = ds.test.images[(ds.test.images[:, 0] == ds.test.images[:, 1]).flatten(1).all(1)]
    assert len(grey) == 6 and torch.equal(grey[:, 0], grey[:, 2])


def test_folder_of_16_bit_images_is_float(tmp_path: Path) -> None:
    values = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 251
    for c in ("x", "y"):
        for i in range(10):
            save(tmp_path / "f" / c / f"{i}.png", values)
    ds = load_dataset(str(tmp_path / "f"), image_size=16)
    assert ds.train.images.dtype == torch.float32 and ds.in_chans == 1
    np.testing.assert_allclose(ds.train.images[0, 0].numpy(), values / 65535, atol=1e-7)
    assert torch.equal(ds.train.float_images(0), ds.train.images[0])


def test_folder_errors(tmp_path: Path) -> None:
    save(tmp_path / "mixed" / "train" / "a" / "0.png", constant(0))
    save(tmp_path / "mixed" / "b" / "0.png", constant(0))
    with pytest.raises(DataError, match="mixes split folders"):
        load_dataset(str(tmp_path / "mixed"))
    save(tmp_path / "notrain" / "test" / "a" / "0.png", constant(0))
    with pytest.raises(DataError, match="no train/"):
        load_dataset(str(tmp_path / "notrain"))
    root = make_flat_folder(tmp_path / "bad", per_class=5, classes=("a", "b"))
    (root / "b" / "3.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"3\.png"):
        load_dataset(str(root), image_size=8)
    save(tmp_path / "tiny" / "a" / "0.png", constant(0))
    save(tmp_path / "tiny" / "b" / "0.png", constant(0))
    with pytest.raises(DataError, match="stratified split of 2 images"):
        load_dataset(str(tmp_path / "tiny"))
    small = load_dataset(str(make_flat_folder(tmp_path / "small", per_class=3, classes=("a", "b"))), image_size=8)
    assert [small.class_counts(s) for s in ("train", "val", "test")] == [[1, 1], [1, 1], [1, 1]]  # >= 1 per class


# --- CSV manifests -----------------------------------------------------------------------------------------------


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_with_split_column(tmp_path: Path) -> None:
    lines = ["path,label,split"]
    for i in range(12):
        save(tmp_path / "img" / f"{i}.png", constant(i))
        lines.append(f"img/{i}.png,{'cat' if i % 2 else 'dog'},{['train', 'train', 'val', 'test'][i % 4]}")
    ds = load_dataset(str(write_manifest(tmp_path / "m.csv", lines)), image_size=8)
    assert ds.classes == ["cat", "dog"] and ds.source["kind"] == "csv"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (6, 3, 3)
    assert ds.val.images[:, 0, 0, 0].tolist() == [2, 6, 10] and ds.val.labels.tolist() == [1, 1, 1]


def test_manifest_without_split_column_sorts_integer_labels(tmp_path: Path) -> None:
    lines = ["label,path"]
    for i in range(30):
        file = save(tmp_path / "img" / f"{i}.png", constant(i, (12, 9)))
        lines.append(f"{[2, 9, 10][i % 3]},{file if i == 0 else f'img/{i}.png'}")  # one absolute path
    ds = load_dataset(str(write_manifest(tmp_path / "m.csv", lines)), image_size=8, split=(0.6, 0.2, 0.2))
    assert ds.classes == ["2", "9", "10"] and ds.image_shape == (1, 8, 8)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [18, 6, 6]
    assert ds.class_counts("val") == [2, 2, 2]


@pytest.mark.parametrize(
    ("row", "message"),
    [("img/missing.png,a", "line 3.*not found"), ("img/0.png,", "line 3.*label is empty"), (",a", "line 3.*path")],
)
def test_manifest_bad_rows_name_the_line_and_file(tmp_path: Path, row: str, message: str) -> None:
    save(tmp_path / "img" / "0.png", constant(0))
    manifest = write_manifest(tmp_path / "m.csv", ["path,label", "img/0.png,a", row])
    with pytest.raises(DataError, match=message) as info:
        load_dataset(str(manifest))
    assert str(manifest) in str(info.value)


def test_manifest_bad_split_and_header(tmp_path: Path) -> None:
    save(tmp_path / "0.png", constant(0))
    with pytest.raises(DataError, match="line 2.*unknown split 'training'"):
        load_dataset(str(write_manifest(tmp_path / "a.csv", ["path,label,split", "0.png,a,training"])))
    with pytest.raises(DataError, match="'path' and 'label'"):
        load_dataset(str(write_manifest(tmp_path / "b.csv", ["file,class", "0.png,a"])))


# --- the data set container --------------------------------------------------------------------------------------


def test_split_and_dataset_helpers() -> None:
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).view(2, 3, 2, 2)
    split = Split(images, torch.tensor([0, 1]))
    assert len(split) == 2 and torch.allclose(split.float_images([1]), images[1:].float() / 255)
    ds = ImageDataset("x", "binary", ["a", "b"], split, split, split)
    with pytest.raises(ConfigError, match="Did you mean 'val'"):
        ds.split("vall")
    with pytest.raises(DataError, match="2 images but 3 labels"):
        Split(images, torch.tensor([0, 1, 1]))


# --- batched preprocessing ---------------------------------------------------------------------------------------


def coordinates(batch: int, size: int) -> torch.Tensor:
    """Channel 0 holds each pixel centre's x in [0, 1], channel 1 its y: crops and flips can be read off the output."""
    ramp = (torch.arange(size) + 0.5) / size
    return torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size)]).expand(batch, 2, size, size)


def test_preprocess_resize_and_normalise() -> None:
    images = torch.randint(0, 256, (4, 3, 40, 30), dtype=torch.uint8)
    pre = Preprocess(16, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    out = pre(images)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    expected = F.interpolate(images.float() / 255, size=(16, 16), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (expected - mean) / std)
    torch.testing.assert_close(pre(images.float() / 255), out)
    assert torch.equal(pre(images), out)
    square = images[..., :30, :]
    assert torch.equal(Preprocess(30, (0.5,), (0.5,))(square), (square.float() / 255 - 0.5) / 0.5)  # no resize


def test_preprocess_grey_meets_rgb_statistics() -> None:
    grey = torch.full((2, 1, 8, 8), 0.5)
    out = Preprocess(8, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(grey)
    expected = (0.5 - (0.485 + 0.456 + 0.406) / 3) / ((0.229 + 0.224 + 0.225) / 3)
    assert out.shape == (2, 1, 8, 8) and torch.allclose(out, torch.full_like(out, expected))
    with pytest.raises(ConfigError, match="2 entries but the images have 3"):
        Preprocess(8, (0.5, 0.5), (0.5, 0.5))(torch.zeros(1, 3, 8, 8))


def test_augment_is_seeded() -> None:
    images = torch.randint(0, 256, (8, 3, 28, 28), dtype=torch.uint8)
    pre = Preprocess(32, (0.5,) * 3, (0.5,) * 3, augment=True)
    first = pre(images, torch.Generator().manual_seed(0))
    assert first.shape == (8, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, pre(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, pre(images, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("scale", [(0.5, 1.0), (0.2, 0.3)])
def test_augment_crops_and_flips(scale: tuple[float, float]) -> None:
    size = 32
    out = Preprocess(size, (0.0, 0.0), (1.0, 1.0), augment=True, scale=scale)(
        coordinates(400, size), torch.Generator().manual_seed(0)
    )
    dx = out[:, 0, :, -1] - out[:, 0, :, 0]  # x span across each output row; negative when flipped
    dy = out[:, 1, -1, :] - out[:, 1, 0, :]
    flipped = (dx.mean(1) < 0).float().mean().item()
    assert 0.4 < flipped < 0.6
    inner = 1 - 1 / size  # output pixel centres span this fraction of the crop
    width, height = dx.abs().mean(1) / inner, dy.mean(1) / inner
    area = width * height
    assert area.min() > scale[0] - 0.03 and area.max() < scale[1] + 0.01
    # Like torchvision, proposals that do not fit are redrawn, which favours smaller crops: 0.69 for (0.5, 1).
    assert abs(area.mean().item() - {0.5: 0.69, 0.2: 0.25}[scale[0]]) < 0.03
    assert (width / height).min() > 3 / 4 - 0.03 and (width / height).max() < 4 / 3 + 0.03
    no_flip = Preprocess(size, (0.0, 0.0), (1.0, 1.0), augment=True, hflip=False)(coordinates(50, size))
    assert (no_flip[:, 0, :, -1] > no_flip[:, 0, :, 0]).all()
