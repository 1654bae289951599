"""``medtl report``: the page of a run, of a compare grid and of a search, checked as HTML and in a real browser.

The browser test opens the page from a ``file://`` path in headless Chromium with name resolution off, and reads
back (through an error collector injected into a copy of the page, then ``--dump-dom``) every script error, failed
resource and non-local request, the metric values, and a screenshot. It fails, not skips, on CI without Chromium.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import medtl
from medtl.cli import main
from medtl.compare import compare, summarise
from medtl.errors import ConfigError
from medtl.report import write_report
from medtl.report.blocks import fmt

pytestmark = pytest.mark.slow
TINY = dict(image_size=32, epochs=2, batch_size=128, threads=1, augment=False, cut="blocks.2")
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)

# Injected into a copy of the page: collects errors of scripts, failed images/resources (capture phase: they do not
# bubble), console.error calls and requests for anything but data:/file: URLs, into attributes of <html>.
PROBE = """<script>
window.__errors = [];
addEventListener('error', e => __errors.push(String(e.message || (e.target && (e.target.src || e.target.href))
                                                    || 'error')), true);
addEventListener('unhandledrejection', e => __errors.push('unhandled rejection: ' + e.reason));
const __consoleError = console.error.bind(console);
console.error = (...args) => { __errors.push(args.join(' ')); __consoleError(...args); };
addEventListener('load', () => {
  const html = document.documentElement;
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const remote = performance.getEntriesByType('resource').map(r => r.name)
      .filter(n => !n.startsWith('data:') && !n.startsWith('file:'));
  html.setAttribute('data-errors', JSON.stringify(__errors));
  html.setAttribute('data-broken', JSON.stringify(broken));
  html.setAttribute('data-remote', JSON.stringify(remote));
  html.setAttribute('data-images', String(document.images.length));
});
</script>"""


def chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the report in Chromium, and none is installed (.ci/run installs it).")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this test")
    return found


def browse(page, tmp_path, screenshot: bool = True) -> tuple[str, str, np.ndarray | None]:
    """Open ``page`` headless with the network off: the DOM after load (of a copy with :data:`PROBE` injected),
    Chromium's log, and a 1280 x 2400 screenshot of the page itself as an array."""
    browser = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
             '--host-resolver-rules=MAP * ~NOTFOUND', "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    done = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    image = None
    if screenshot:
        shot = tmp_path / "screenshot.png"
        subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], capture_output=True,
                       timeout=180, check=True)
        from PIL import Image

        image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    return done.stdout, done.stderr, image


def attribute(dom: str, name: str):
    match = re.search(rf'{name}="([^"]*)"', dom)
    assert match, f"{name} missing: the page's load event never ran"
    return json.loads(match.group(1).replace("&quot;", '"'))


def assert_clean(dom: str, log: str) -> None:
    assert attribute(dom, "data-errors") == []
    assert attribute(dom, "data-broken") == []  # every inline figure decoded
    assert attribute(dom, "data-remote") == []
    assert "Uncaught" not in log  # Chromium's own log of script errors (--enable-logging=stderr), a second witness


def cell(dom: str, key: str) -> str:
    match = re.search(rf'data-key="{re.escape(key)}">([^<]*)<', dom)
    assert match, f"no cell for {key}"
    return match.group(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return medtl.train(out=str(tmp_path_factory.mktemp("runs")), verbose=False, **TINY).run_dir


def test_run_report_opens_in_chromium_with_its_metrics(run_dir, tmp_path):
    page = write_report(run_dir)
    html = page.read_text()
    assert not EXTERNAL.search(html), "the report must not load anything from the network"
    assert html.count('src="data:image/png;base64,') >= 4  # ROC/PR, confusion, reliability, training
    dom, log, image = browse(page, tmp_path)
    assert_clean(dom, log)
    assert int(attribute(dom, "data-images")) >= 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shown = [k for k, v in metrics.items() if k.startswith(("test_", "val_")) and isinstance(v, float)]
    assert "test_auroc" in shown
    for key in shown:
        assert cell(dom, key) == fmt(metrics[key]), key
    for title in ("Test predictions", "Confusion matrix", "Reliability", "Training", "Provenance"):
        assert title.lower() in dom.lower() or title in html
    assert image.shape == (2400, 1280)
    assert image.std() > 25 and (image < 200).mean() > 0.03, "the screenshot is (nearly) blank"  # 0.05 when drawn


def test_report_shows_what_newer_runs_record_and_survives_their_absence(run_dir, tmp_path):
    """Confidence intervals, a decision threshold and split counts are shown when metrics.json has them."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    classes = json.loads((copy / "model.json").read_text())["classes"]
    metrics |= {"test_auroc_ci": [0.61, 0.93], "test_sensitivity": 0.8, "threshold": 0.42,
                "split_counts": {"train": {c: 10 + i for i, c in enumerate(classes)}, "val": [3, 4], "test": 156},
                "provenance": {"command": ["medtl", "train"], "versions": {"torch": "9.9"}, "git_commit": "abc1234"},
                "test_confusion_matrix": [[1, 2], [3, 4]]}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    (copy / "history.csv").unlink()
    html = write_report(copy).read_text()
    assert 'data-key="test_auroc_ci">[0.6100, 0.9300]<' in html
    assert 'data-key="test_sensitivity">0.8000<' in html
    assert "probability ≥ 0.420" in html  # the confusion matrix at the recorded threshold
    assert "<td>10</td>" in html and "abc1234" in html and "medtl train" in html and "9.9" in html
    assert "No history.csv" in html and "test_confusion_matrix" in html


def test_report_errors(tmp_path, monkeypatch, run_dir):
    assert main(["report", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match="neither a finished run"):
        write_report(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"medtl\[plot\]"):
        write_report(run_dir)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    config = medtl.TrainConfig(**{**TINY, "epochs": 1, "cut": None})
    return compare(config, ["full", "truncated"], cuts="blocks.2", seeds=[0], out=out), out


def test_grid_report_in_chromium(grid, tmp_path):
    result, out = grid
    assert main(["report", str(out)]) == 0
    page = out / "report.html"
    html = page.read_text()
    assert not EXTERNAL.search(html)
    for title in ("The table", "Accuracy against cost", "Against the cut point", "ROC and PR curves"):
        assert f">{title}</h2>" in html
    dom, log, image = browse(page, tmp_path)
    assert_clean(dom, log)
    for row in result.table:
        assert row["method"] in dom and f"{row['test_auroc_mean']:.3f}" in dom
    assert image.std() > 25


def test_search_report_from_candidates(grid, tmp_path):
    """A search directory (``search.csv``, ``search.json``) gets the candidates table and the cut curve."""
    result, out = grid
    records = [r for r in result.records if r["strategy"] == "truncated"]
    rows = [{"stage": 1, **r, "picked": True} for r in summarise(records, ("val_auroc", "val_auprc", "test_auroc",
                                                                           "test_auprc"))]
    from medtl.artifacts import write_csv, write_json

    write_csv(tmp_path / "search.csv", rows)
    write_json(tmp_path / "search.json", {"select": "val_auprc", "seeds": [0], "block_pick": "blocks.2",
                                          "pick": "blocks.2", "stage_two": [], "cost": {"runs": 1},
                                          "config": {"backbone": "efficientnet_lite0", "data": "breastmnist"}})
    html = write_report(tmp_path).read_text()
    assert ">Candidates</h2>" in html and ">Against the cut point</h2>" in html and 'class="mark"' in html
