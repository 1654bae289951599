"""TransFusion (Raghu et al., NeurIPS 2019, as the TruncatedTL paper compares it): keep the pretrained bottom of the
network up to a cut, and make every later block thinner (1/shrink of its channels) and randomly initialised."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Strategy


def transfusion(cut: str | None = None, slim_from: str | None = None, shrink: int = 2) -> Strategy:
    """TransFusion: pretrained bottom up to ``slim_from``, every later block thinner and re-initialised.

    The kept layers keep their weights and BatchNorm statistics; each later block is rebuilt with 1/``shrink`` of
    its channels and random weights; everything trains."""
    if slim_from is None:
        raise ConfigError("the transfusion strategy needs --slim-from CUT (the last pretrained cut; every later block "
                          "is slimmed and re-initialised).")
    return Strategy("transfusion", cut=cut, slim_from=slim_from, shrink=shrink)
