"""The controller in file mode: derived MCS objects kept in memory and shown on the admin API.

In file mode nothing is written anywhere (CONTRACT): the ServiceImports, EndpointSlices
and `amcs-` Services are recomputed from each fleet snapshot by the pure derive_imports
and served at /debug/imports?cluster=NAME.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from fleet.fleet import not_following
from fleet.snapshot import FleetSnapshot

from .imports import DerivedFleet, derive_imports
from .render import derived_cluster_to_dict, export_status_to_dict

log = logging.getLogger("fleetgate.controller")


class FileController:
    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet
        self.derived: DerivedFleet | None = None
        self._unsubscribe: Callable[[], None] = not_following

    def apply(self, snapshot: FleetSnapshot) -> None:
        # incremental: only services whose objects changed are derived again
        self.derived = derive_imports(snapshot, previous=self.derived)
        for d in self.derived.diagnostics:
            log.warning("controller: %s", d)

    def start(self) -> None:
        if self.fleet.snapshot is not None:
            self.apply(self.fleet.snapshot)
        self._unsubscribe = self.fleet.subscribe(self.apply)

    def debug_imports(self, cluster: str | None) -> dict[str, Any]:
        derived = self.derived
        if derived is None:
            raise LookupError("no fleet snapshot yet")
        if not cluster:
            raise ValueError("give ?cluster=NAME, one of: " + ", ".join(sorted(derived.per_cluster)))
        if cluster not in self.fleet.snapshot.member_names:
            raise LookupError(f"no member cluster {cluster!r}")
        dc = derived.per_cluster.get(cluster)
        body = derived_cluster_to_dict(dc) if dc is not None else {
            "serviceImports": [], "services": [], "endpointSlices": []}
        body["cluster"] = cluster
        body["exports"] = [row for row in export_status_to_dict(derived) if row["cluster"] == cluster]
        return body

    async def close(self) -> None:
        self._unsubscribe()


def start_file_controller(fleet: Any, admin: Any) -> FileController:
    ctl = FileController(fleet)
    ctl.start()
    if admin is not None:
        admin.add_json("/debug/imports", lambda request: ctl.debug_imports(request.query.get("cluster")))
    return ctl
