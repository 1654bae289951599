"""``torchrun --nproc-per-node 2 -m medtl train``: DistributedDataParallel over gloo on CPU writes one run directory,
resumes, and (where BatchNorm cannot make the processes differ) learns exactly what one process learns."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_npz
from safetensors.torch import load_file

import medtl

pytestmark = pytest.mark.slow


def torchrun(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "medtl", "train", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_torchrun_two_gloo_processes_train_resume_and_match_one_process(tmp_path):
    # linear probing: the trunk and its BatchNorm are frozen, so the gradient DDP averages over the two halves of
    # each batch is the whole batch's gradient, and the weights must equal a single process's
    options = dict(data=str(tiny_npz(tmp_path / "tiny.npz")), strategy="linear", image_size=32, batch_size=16,
                   augment=False, threads=1, bootstrap=0, report=False, device="cpu")
    flags = [a for k, v in options.items() for a in ((f"--{k.replace('_', '-')}", str(v)) if not isinstance(v, bool)
                                                     else (f"--{'' if v else 'no-'}{k.replace('_', '-')}",))]
    torchrun(*flags, "--epochs", "1", "--quiet", "--out", str(tmp_path / "ddp"))
    runs = list((tmp_path / "ddp").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()  # one run directory, written by rank 0
    torchrun("--resume", str(runs[0]), "--epochs", "2", "--quiet")
    assert list((tmp_path / "ddp").iterdir()) == runs
    assert medtl.RunDir(runs[0]).metrics()["epochs_run"] == 2

    single = medtl.train(epochs=1, out=str(tmp_path / "one"), verbose=False, **options)
    medtl.resume(single.run_dir, epochs=2, verbose=False)
    ddp, one = load_file(runs[0] / "model.safetensors"), load_file(single.run_dir / "model.safetensors")
    assert ddp.keys() == one.keys()
    for k in one:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
