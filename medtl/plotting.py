"""matplotlib for every figure of medtl (comparison curves, report figures, Grad-CAM, reuse, leakage pairs): imported
on first use through :func:`medtl.optional.require`, with the non-interactive Agg backend, so that drawing works on a
server without a display and a missing ``plot`` extra gives the same message everywhere."""
from __future__ import annotations

from types import ModuleType

from .optional import require


def pyplot(purpose: str) -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend; ``purpose`` names the figure in the message when it is missing."""
    matplotlib = require("matplotlib", extra="plot", purpose=purpose)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra="plot", purpose=purpose)
