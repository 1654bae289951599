"""``--executor ray``: a grid through Ray Tune gives the metrics of the local executor, and survives a node dying
mid-training. One real two-node cluster (``ray start --head`` and a second ``ray start --address``, on loopback,
on free ports, in their own sessions) serves the module; teardown stops only its own processes, never `ray stop`."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, tiny_npz, wait_for

pytest.importorskip("ray", reason="ray is not installed (pip install 'medtl[ray]'; CI installs it with the dev extra)")

from medtl.compare import LocalExecutor, compare  # noqa: E402
from medtl.compare.ray_executor import RayExecutor  # noqa: E402
from medtl.config import TrainConfig  # noqa: E402

pytestmark = pytest.mark.slow
METRICS = ("test_auroc", "test_auprc", "test_accuracy", "val_auroc", "val_auprc", "best_epoch", "epochs_run")
RAY = Path(sys.executable).with_name("ray")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tree(root: int) -> set[int]:
    """``root``'s descendants and every process of its session (ours only: the session was started for it)."""
    parents, sessions = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)], sessions[int(entry.name)] = int(fields[1]), int(fields[3])
        except (ValueError, OSError, IndexError):
            continue
    found, grew = {p for p, s in sessions.items() if s == root} | {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Node:
    """One ``ray start --block`` in its own session, its output in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict):
        self.log = log
        self.proc = subprocess.Popen([str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1",
                                      "--num-cpus", "1", "--disable-usage-stats", *args, *self.ports()],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)
        wait_for(lambda: "block forever" in log.read_text(), f"ray start ({log.name})", timeout=120, proc=self.proc,
                 output=log.read_text)

    @staticmethod
    def ports() -> list[str]:
        p = free_ports(7)
        return ["--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]), "--metrics-export-port",
                str(p[2]), "--runtime-env-agent-port", str(p[3]), "--dashboard-agent-listen-port", str(p[4]),
                "--dashboard-agent-grpc-port", str(p[5]), "--min-worker-port", str(p[6]),
                "--max-worker-port", str(p[6] + 40)]

    def processes(self) -> set[int]:
        return tree(self.proc.pid)

    def stop(self) -> None:
        pids = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if sig == signal.SIGTERM:
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node of one CPU each; yields the address and the worker node."""
    import ray

    tmp = tmp_path_factory.mktemp("ray")
    # Ray's session sockets live under --temp-dir, and a Unix socket path has at most 107 bytes: pytest's temporary
    # directory (longer under pytest-xdist: .../popen-gw0/...) can exceed that, so the sockets get a short directory
    sockets = Path(tempfile.mkdtemp(prefix="medtl-ray-", dir="/tmp"))
    # no token authentication on this loopback cluster, whatever ~/.ray/auth_token an earlier local ray.init() left
    auth = pytest.MonkeyPatch()
    auth.setenv("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT),
           # the head declares a silent node dead after ~1 s instead of ~30 s
           "RAY_health_check_period_ms": "200", "RAY_health_check_timeout_ms": "500",
           "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
    port = free_ports(1)[0]
    nodes = []
    try:
        nodes.append(Node(["--head", "--port", str(port), "--include-dashboard=false",
                           "--temp-dir", str(sockets)], tmp / "head.log", env))
        nodes.append(Node(["--address", f"127.0.0.1:{port}"], tmp / "worker.log", env))
        ray.init(address=f"127.0.0.1:{port}", configure_logging=False)
        wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, "two Ray nodes alive", timeout=60)
        yield f"127.0.0.1:{port}", nodes[1]
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            node.stop()
        auth.undo()
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 4-run grid (2 cuts x 2 seeds) of short runs that checkpoint every epoch, and its metrics trained locally."""
    tmp = tmp_path_factory.mktemp("grid")
    base = TrainConfig(data=str(tiny_npz(tmp / "tiny.npz")), image_size=32, epochs=6, batch_size=4, threads=1,
                       augment=False, bootstrap=0, checkpoint_every=0)
    args = dict(strategies=["truncated"], cuts="stem,blocks.0", seeds=[0, 1], plots=False)
    compare(base, out=tmp / "local", executor=LocalExecutor(), **args)
    return base, args, metrics(tmp / "local")


def metrics(out: Path) -> dict[str, dict]:
    with open(out / "runs.csv", newline="") as f:
        return {r["run"]: {k: r[k] for k in METRICS} for r in csv.DictReader(f)}


def test_the_same_grid_through_ray_gives_the_local_metrics(cluster, grid, tmp_path):
    address, _ = cluster
    base, args, local = grid
    compare(base, out=tmp_path, executor=RayExecutor(address, storage=tmp_path / "tune"), **args)
    assert len(local) == 4 and metrics(tmp_path) == local


def test_asha_through_ray_stops_cuts_at_a_rung_and_finishes_the_rest(cluster, tmp_path):
    """Tune's ASHAScheduler decides; the run directories must say what it decided: a stopped cut paused (resumable,
    unfinished) after the rung's epoch, a kept one finished."""
    from medtl.compare import build_grid
    from medtl.compare.halving import Halving, history
    from medtl.rundir import RunDir

    address, _ = cluster
    base = TrainConfig(data=str(tiny_npz(tmp_path / "tiny.npz")), image_size=32, epochs=2, batch_size=8, threads=1,
                       augment=False, bootstrap=0, report=False, checkpoint_every=1e6)
    runs = build_grid(base.validate(), ["truncated"], "stem,blocks.1", [0], None, tmp_path / "asha")
    stopped = RayExecutor(address, storage=tmp_path / "tune").halving({r.cut: [r] for r in runs},
                                                                      Halving(2, grace=1, eta=2), "auprc")
    assert set(stopped) == {"stem", "blocks.1"} and set(stopped.values()) <= {None, 1} and None in stopped.values()
    for run in runs:
        epochs = len(history(run))
        assert (epochs, RunDir(run.run_dir).finished) == ((1, False) if stopped[run.cut] == 1 else (2, True))


def test_a_grid_survives_its_worker_node_dying_mid_training(cluster, grid, tmp_path):
    """The worker node's raylet is killed while a run trains there; Ray retries the trial on the head node, it
    resumes from the run's checkpoint, and every run ends with the metrics of the undisturbed local grid."""
    import threading

    import ray

    address, worker = cluster
    base, args, local = grid
    out = tmp_path / "out"
    done = threading.Event()
    failure = []

    def run() -> None:
        try:
            compare(base, out=out, executor=RayExecutor(address, storage=tmp_path / "tune"), **args)
        except BaseException as e:  # noqa: BLE001 -- reported by the test thread
            failure.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def training_on_worker() -> Path | None:
        """A run whose lock a process of the worker node holds, once it has finished an epoch."""
        for pid in worker.processes():
            try:
                links = [os.readlink(fd) for fd in (Path("/proc") / str(pid) / "fd").iterdir()]
            except OSError:
                continue
            for link in links:
                if link.endswith("/.lock") and (Path(link).parent / "history.csv").is_file():
                    return Path(link).parent
        return None

    victim = wait_for(lambda: training_on_worker() or (done.is_set() and "done"), "a run training on the worker "
                      "node", timeout=240)
    assert victim != "done", "the grid finished before a run trained on the worker node"
    raylet = next(pid for pid in worker.processes() if "raylet" in cmdline(pid).split(" ")[0])
    os.kill(raylet, signal.SIGKILL)
    assert not (victim / "metrics.json").is_file(), "the run finished before the kill; give it more epochs"
    wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 1, "the worker node declared dead", timeout=60)
    thread.join(timeout=300)
    assert done.is_set() and not failure, failure
    assert metrics(out) == local
