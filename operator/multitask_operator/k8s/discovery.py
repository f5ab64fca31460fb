"""Which optional training runtimes the cluster serves (API discovery, no RBAC needed).

    served = await Discovery().served(client)        # e.g. frozenset({"jobset"})

Looked up once at start (the first reconcile) and again, at most every REFRESH_S, while a spec
asks for one that was missing, so that installing JobSet later does not need an operator
restart.
"""

from __future__ import annotations

import logging
import time

from ..api.common import Runtime
from ..render.runtimes import JOBSET_API, TRAINJOB_API
from .client import Client

log = logging.getLogger(__name__)

# runtime -> (group/version, plural) that must be served for it.
APIS: dict[str, tuple[str, str]] = {
    str(Runtime.JOBSET): (JOBSET_API, "jobsets"),
    str(Runtime.KUBEFLOW): (TRAINJOB_API, "trainjobs"),
}
REFRESH_S = 60.0


async def served_runtimes(client: Client) -> frozenset[str]:
    found = set()
    for runtime, (group_version, plural) in APIS.items():
        resources = await client.discover(group_version)
        if resources and any(r.get("name") == plural for r in resources.get("resources") or []):
            found.add(runtime)
    return frozenset(found)


class Discovery:
    def __init__(self) -> None:
        self._served: frozenset[str] | None = None
        self._checked = 0.0

    async def served(self, client: Client, wanted: str | None = None) -> frozenset[str]:
        """The runtimes served; looked up again when `wanted` is missing and the last look is
        older than REFRESH_S."""
        stale = time.monotonic() - self._checked > REFRESH_S
        if self._served is None or (wanted and wanted not in self._served and stale):
            self._served = await served_runtimes(client)
            self._checked = time.monotonic()
            log.info("training runtimes served by the cluster: %s",
                     ", ".join(sorted(self._served)) or "none besides Jobs")
        return self._served
