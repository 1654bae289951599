"""Unit behaviour of the training loop's pieces (fast, no training)."""
from __future__ import annotations

import pytest
import torch

from medtl.config import TrainConfig
from medtl.inference import eval_batch_size
from medtl.training.loop import batches, make_schedule, num_batches


@pytest.mark.parametrize("n", [2, 3, 63, 64, 65, 66, 129, 546])
@pytest.mark.parametrize("batch_size", [2, 7, 64])
def test_batches_cover_every_image_once_and_never_hold_one(n, batch_size):
    chunks = batches(n, batch_size, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(chunks).tolist()) == list(range(n))
    assert min(len(c) for c in chunks) >= 2
    assert len(chunks) == num_batches(n, batch_size)


def test_batches_are_seeded():
    a = batches(100, 10, torch.Generator().manual_seed(1))
    b = batches(100, 10, torch.Generator().manual_seed(1))
    c = batches(100, 10, torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])


def test_cosine_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = make_schedule(opt, TrainConfig(epochs=4, warmup_epochs=1), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[5] < lrs[10] and max(lrs) == pytest.approx(1.0, abs=0.02)
    assert lrs[10:] == sorted(lrs[10:], reverse=True) and lrs[-1] < 0.01


def test_schedule_restarts_its_warm_up_when_lp_ft_thaws_the_trunk():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = make_schedule(opt, TrainConfig(epochs=6, warmup_epochs=1), steps_per_epoch=10, restart_epoch=2)
    lrs = []
    for _ in range(60):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    probe, tune = lrs[:20], lrs[20:]
    assert probe[-1] < 0.05 and tune[0] < 0.2  # the probe decays; fine-tuning starts low again
    assert max(tune) == pytest.approx(1.0, abs=0.02) and tune[10:] == sorted(tune[10:], reverse=True)


def test_evaluation_batches_hold_the_same_number_of_pixels_at_every_size():
    assert [eval_batch_size(s) for s in (28, 64, 128, 224, 5000)] == [1024, 256, 64, 20, 1]


def test_a_trainer_from_a_plain_train_config_resolves_what_the_recipe_leaves_open(tmp_path):
    """A Python user's ``TrainConfig()`` leaves epochs, patience, warm-up and image size to be resolved; the loop
    resolves them (as ``medtl train`` does) instead of failing inside the schedule (warm-up None)."""
    import torch

    from conftest import tiny_npz
    from medtl import TrainConfig, build_classifier, load_dataset
    from medtl.resolve import make_strategy
    from medtl.rundir import RunDir
    from medtl.training import Trainer

    data = load_dataset(str(tiny_npz(tmp_path / "tiny.npz")))
    cfg = TrainConfig(backbone="resnet18", weights="none", epochs=1, batch_size=8, augment=False, cut="layer1")
    assert cfg.warmup_epochs is None and cfg.patience is None and cfg.image_size is None
    model = build_classifier("resnet18", 2, cut="layer1", weights=None, in_chans=1, image_size=32)
    trainer = Trainer(cfg, torch.device("cpu"), verbose=False)
    fit = trainer.fit(model, make_strategy(cfg), data, RunDir.create(tmp_path, "run"), torch.Generator().manual_seed(0))
    assert [row["epoch"] for row in fit.history] == [1]
    assert trainer.cfg.image_size == 32 and trainer.cfg.warmup_epochs == 0.05 and trainer.cfg.patience == 3


def test_a_trainer_refuses_a_config_for_another_image_size(tmp_path):
    import pytest
    import torch

    from conftest import tiny_npz
    from medtl import TrainConfig, build_classifier, load_dataset
    from medtl.errors import ConfigError
    from medtl.training import Trainer

    data = load_dataset(str(tiny_npz(tmp_path / "tiny.npz")))
    model = build_classifier("resnet18", 2, cut="layer1", weights=None, in_chans=1, image_size=32)
    with pytest.raises(ConfigError, match="image_size 64 is not the 32 px"):
        Trainer(TrainConfig(image_size=64), torch.device("cpu")).resolved(model, data)
