"""`mtm gateway` as its own process, with the cluster DNS of the handover test: names given
as --host NAME=PORT resolve to 127.0.0.1:PORT (what kube-proxy does for a Service's name and
port), so the gateway reaches the old backends' Services at the URLs the operator rendered.

    python tests/operator/processes/gateway.py --host demo-old-intent.ml.svc=41234 -- \\
        --config gateway.json --upstream http://127.0.0.1:41235 --port 8080
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import aiohttp.connector
from aiohttp.abc import AbstractResolver


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    pairs = argv[:split]
    hosts = {pairs[i + 1].split("=", 1)[0]: int(pairs[i + 1].split("=", 1)[1])
             for i in range(0, len(pairs), 2) if pairs[i] == "--host"}

    class ClusterDns(AbstractResolver):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        async def resolve(self, host: str, port: int = 0,
                          family: int = socket.AF_INET) -> list[dict[str, Any]]:
            if host not in hosts:
                raise OSError(f"no such Service in the test cluster: {host}")
            return [{"hostname": host, "host": "127.0.0.1", "port": hosts[host],
                     "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]

        async def close(self) -> None:
            return None

    aiohttp.connector.DefaultResolver = ClusterDns  # type: ignore[misc]
    from multitask_operator.cli import main as mtm

    sys.argv = ["mtm", "gateway", *argv[split + 1:]]
    mtm()


if __name__ == "__main__":
    main()
