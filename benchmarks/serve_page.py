"""The page of ``medtl serve`` (``GET /``) in headless Chromium: choose an image, drop another, and check that both
show the probabilities the API returns; a screenshot is written for a person to look at.

``python benchmarks/serve_page.py --model RUN [--chromium /usr/bin/chromium] [--out docs/figures/serve-page.png]``
    Needs ``pip install playwright`` (driving the system's Chromium through ``executable_path``: no browser download)
    and a run exported with ``medtl export RUN``. The server listens on 127.0.0.1 only and is stopped at the end.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--chromium", default="/usr/lib/chromium/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "serve-page.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    import medtl
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="serve-page-"))
    images = medtl.load_dataset("breastmnist").test.images
    files = [tmp / "test_000.png", tmp / "test_001.png"]
    for f, image in zip(files, images):
        Image.fromarray(image[0].numpy()).resize((112, 112)).save(f)
    from benchmarks.serve_load import start_server

    server, port = start_server(args.model)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('model').textContent.includes('version')")
            page.set_input_files("#files", str(files[0]))  # choose
            data = base64.b64encode(files[1].read_bytes()).decode()
            transfer = page.evaluate_handle(f"""() => {{
                const bytes = Uint8Array.from(atob("{data}"), c => c.charCodeAt(0));
                const t = new DataTransfer();
                t.items.add(new File([bytes], "{files[1].name}", {{type: "image/png"}}));
                return t; }}""")
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})  # drop
            page.wait_for_function("document.querySelectorAll('.result table').length == 2", timeout=30000)
            shown = page.eval_on_selector_all(".result", "boxes => boxes.map(b => b.innerText)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        # the API's own answer for the same files, to compare with what the page shows
        api = {}
        for f in files:
            boundary = "b0undary"
            body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{f.name}"\r\n\r\n'
                    ).encode() + f.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            api[f.name] = json.loads(conn.getresponse().read())["predictions"][0]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"page": shown, "api": api, "errors": errors}, indent=1))
    for name, p in api.items():
        text = next(t for t in shown if t.startswith(f"{name}:"))
        for value in p["probabilities"].values():
            assert f"{value:.4f}" in text, (name, value, text)
    assert not errors, errors
    print(f"ok: both images show the API's probabilities; screenshot {args.out}")


if __name__ == "__main__":
    main()
