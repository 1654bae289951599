"""Ray cluster addresses, checked before any work: ``ray.init`` retries an unreachable address for minutes, with
raw log lines and SIGTERM ignored. Light (no Ray, no torch): the command line checks ``--address`` first."""
from __future__ import annotations

import socket

from .errors import ConfigError


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A cluster address (``HOST:PORT``, ``ray://HOST:PORT``) that accepts a connection within ``timeout`` seconds;
    ``auto`` and None (a local cluster) are Ray's to find."""
    if address is None or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} must be auto or HOST:PORT (the address `ray start --head` prints, "
                          "e.g. 10.0.0.5:6379).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at --address {address} ({e.strerror or e}); start it "
                          f"(`ray start --head --port {port}` on {host}), or give the address its head node "
                          "printed (`ray status` there shows it).") from None
