"""Publish a live member's cluster ID as the ClusterProperty `cluster.clusterset.k8s.io`
(KEP-2149, group about.k8s.io), when that CRD is served there.

The ID is the member's name in fleet.yaml. A ClusterProperty that already exists is the
cluster's identity, set by whoever manages the clusterset: it is never overwritten; one
that names another ID is reported once, since fleetgate would then disagree with it.
"""
from __future__ import annotations

import logging
from typing import Any

from fleet.kube import CLUSTER_PROPERTIES, KubeError

from .derive.names import LABEL_MANAGED_BY, MANAGED_BY

log = logging.getLogger("fleetgate.controller.clusterid")

CLUSTER_ID_PROPERTY = "cluster.clusterset.k8s.io"

# outcomes of publish_cluster_id; each one is final (Unreachable is raised and retried)
CREATED, PRESENT, MISMATCH, NOT_SERVED = "created", "present", "mismatch", "not-served"


def cluster_property(cluster: str) -> dict[str, Any]:
    version = CLUSTER_PROPERTIES.versions[0]
    return {"apiVersion": CLUSTER_PROPERTIES.api_version(version), "kind": "ClusterProperty",
            "metadata": {"name": CLUSTER_ID_PROPERTY, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
            "spec": {"value": cluster}}


async def publish_cluster_id(client: Any, cluster: str) -> str:
    """Create the property unless it exists; create first, so a 404 can only mean that the
    CRD is not served (a GET's 404 could also mean that the object is missing)."""
    version = CLUSTER_PROPERTIES.versions[0]
    try:
        await client.create(CLUSTER_PROPERTIES, version, cluster_property(cluster))
    except KubeError as exc:
        if exc.not_found:
            log.info("cluster %s: the ClusterProperty CRD is not served; cluster ID not published", cluster)
            return NOT_SERVED
        if not exc.conflict:
            raise
        existing = await client.get(CLUSTER_PROPERTIES, version, "", CLUSTER_ID_PROPERTY)
        value = (existing.get("spec") or {}).get("value")
        if value != cluster:
            log.warning("cluster %s: ClusterProperty %s says %r; leaving it (fleet.yaml names this "
                        "cluster %r)", cluster, CLUSTER_ID_PROPERTY, value, cluster)
            return MISMATCH
        return PRESENT
    log.info("cluster %s: published ClusterProperty %s=%s", cluster, CLUSTER_ID_PROPERTY, cluster)
    return CREATED
