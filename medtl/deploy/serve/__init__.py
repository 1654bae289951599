"""``medtl serve MODEL``: an HTTP service for an exported model (FastAPI + uvicorn + onnxruntime; no torch in the
process). See :mod:`.app` for the routes and :mod:`.model` for what MODEL may be."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from .app import create_app, require_fastapi
from .model import load


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32,
          batch_window_ms: float = 5.0, max_body_mb: float = 20.0, threads: int | None = None) -> None:
    """Load ``model`` and answer requests until interrupted (Ctrl-C or SIGTERM)."""
    if not 1 <= max_batch <= 4096:
        raise ConfigError(f"--max-batch must be between 1 and 4096, got {max_batch}.")
    if not 0 <= batch_window_ms <= 1000:
        raise ConfigError(f"--batch-window-ms must be between 0 and 1000, got {batch_window_ms}.")
    if not 0 < max_body_mb <= 1024:
        raise ConfigError(f"--max-body-mb must be above 0 and at most 1024, got {max_body_mb}.")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}.")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}.")
    require_fastapi()
    import uvicorn

    served = load(model, threads)
    app = create_app(served, max_batch, batch_window_ms, max_body_mb)
    print(f"medtl serve: {served.name} (version {served.version}, {len(served.members)} model(s), classes "
          f"{', '.join(served.classes)}) at http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                limit_max_requests=None, timeout_graceful_shutdown=5)
