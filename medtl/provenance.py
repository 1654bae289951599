"""What produced a result (a run, an ensemble): the command line, versions, commit and machine, recorded in its
metrics.json. A leaf module, so that inference code (ensembles, deploy) can record it without the training code."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import timm
import torch

from . import __version__


def provenance() -> dict:
    """What produced the run: the command line, versions, the git commit of the working directory (when it is a
    checkout) and the machine."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "versions": {"medtl": __version__, "torch": torch.__version__, "timm": timm.__version__,
                         "python": platform.python_version()},
            "git_commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"}
