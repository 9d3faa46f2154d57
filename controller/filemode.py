"""The controller in file mode: derived MCS objects kept in memory and shown on the admin API.

In file mode nothing is written anywhere (CONTRACT): the ServiceImports, EndpointSlices
and `amcs-` Services the DerivedPublisher derives from each fleet snapshot are served at
/debug/imports?cluster=NAME.
"""
from __future__ import annotations

from typing import Any

from fleet.admin import AdminServer

from .derived import DerivedFeed
from .render import derived_cluster_to_dict, export_status_to_dict


class FileController:
    """Answers /debug/imports from the publisher's latest derivation."""

    def __init__(self, feed: DerivedFeed) -> None:
        self.feed = feed

    def debug_imports(self, cluster: str | None) -> dict[str, Any]:
        current = self.feed.current
        if current is None:
            raise LookupError("no fleet snapshot yet")
        derived = current.derived
        if not cluster:
            raise ValueError("give ?cluster=NAME, one of: " + ", ".join(sorted(derived.per_cluster)))
        if cluster not in current.snapshot.member_names:
            raise LookupError(f"no member cluster {cluster!r}")
        dc = derived.per_cluster.get(cluster)
        body = derived_cluster_to_dict(dc) if dc is not None else {
            "serviceImports": [], "services": [], "endpointSlices": []}
        body["cluster"] = cluster
        body["exports"] = [row for row in export_status_to_dict(derived) if row["cluster"] == cluster]
        return body


def serve_debug_imports(feed: DerivedFeed, admin: AdminServer) -> FileController:
    """/debug/imports on `admin`, answered from `feed` (it holds nothing to stop)."""
    ctl = FileController(feed)
    admin.add_json("/debug/imports", lambda request: ctl.debug_imports(request.query.get("cluster")))
    return ctl
