"""Reachability check of a Ray cluster address, made before ``ray.init``, which can hang."""

from __future__ import annotations

import socket
import urllib.parse

from circtune.errors import ConfigError, ServiceError

_ADDRESS_TIMEOUT_S = 5.0


def check_ray_address(address: str) -> None:
    """Check that a Ray cluster address accepts connections, since ``ray.init`` can hang.

    Raises:
        ServiceError: If nothing listens at the address.
        ConfigError: If the address is invalid.
    """
    if address == "auto":
        return
    parsed = urllib.parse.urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or parsed.port is None:
        raise ConfigError(f"Ray address {address!r} is invalid; use HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=_ADDRESS_TIMEOUT_S):
            pass
    except OSError as error:
        raise ServiceError(
            f"Ray cluster at {address} is unreachable ({error}); start it with 'ray up cluster.yaml' or "
            "'ray start --head', or drop --address / RAY_ADDRESS to run locally"
        ) from error
