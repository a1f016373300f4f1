"""Run Arize Phoenix (the local stack's trace viewer) with its HTTP port only, on loopback.

Run by the Phoenix virtualenv's interpreter as a plain script, so it imports only the standard
library and phoenix (never the `shared` package):

    PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6006 PHOENIX_WORKING_DIR=DIR python phoenix_server.py

Phoenix's own settings come from the PHOENIX_* environment (devstack.components sets them).
Its OTLP gRPC receiver binds every interface (`[::]:4317`) whatever PHOENIX_HOST says, and no
setting turns it off short of read-only mode, which also refuses spans. So this launcher hands
Phoenix a GrpcServer that is always constructed with `disabled=True` before it calls
`phoenix.server.main.main()`: spans come in over OTLP/HTTP at `/v1/traces` on the HTTP port.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any


def loopback(host: str) -> bool:
    """True if `host` is a loopback address or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def disable_grpc() -> None:
    """Make every GrpcServer Phoenix constructs a disabled one (it then opens no port)."""
    import phoenix.server.app as app
    import phoenix.server.grpc_server as grpc_server

    original = getattr(app, "GrpcServer", None)
    if original is not grpc_server.GrpcServer:
        # Phoenix no longer builds its gRPC receiver where this launcher expects: starting it
        # anyway could open a port on every interface.
        raise RuntimeError("phoenix.server.app.GrpcServer not found: cannot disable gRPC")

    class DisabledGrpcServer(grpc_server.GrpcServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disabled"] = True
            super().__init__(*args, **kwargs)

    app.GrpcServer = DisabledGrpcServer
    grpc_server.GrpcServer = DisabledGrpcServer


def main() -> int:
    host = os.environ.get("PHOENIX_HOST", "")
    if not loopback(host):
        print(f"phoenix_server: PHOENIX_HOST must be a loopback address, not {host!r}")
        return 2
    disable_grpc()
    from phoenix.server.main import main as phoenix_main

    sys.argv = ["phoenix", "serve"]
    phoenix_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
