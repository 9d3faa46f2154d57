"""Names and uids of the derived objects, and the labels that mark them as fleetgate's.

Stable by construction: the same exported name always gives the same `amcs-` name, slice
names and (file mode) uids, so restarts and replicas agree without shared state."""
from __future__ import annotations

import hashlib
from sys import intern
from typing import Mapping

from fleet.objects import MCS_GROUP

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "fleetgate"
LABEL_SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_MANAGED_BY = "controller.fleetgate.io"
ANNOTATION_DERIVED_SERVICE = "multicluster.kubernetes.io/derived-service"
IMPORT_API_VERSION = f"{MCS_GROUP}/v1beta1"


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _fit(full: str, limit: int, hashed: str) -> str:
    """full, or when longer than limit its start and a stable hash of `hashed`."""
    if len(full) <= limit:
        return full
    suffix = _short_hash(hashed)
    return f"{full[:limit - len(suffix) - 1].rstrip('-')}-{suffix}"


def amcs_name(name: str) -> str:
    """`amcs-<name>`, shortened with a stable hash suffix when it would pass 63 characters."""
    return _fit(f"amcs-{name}", 63, name)


def slice_name(service: str, cluster: str, family: str) -> str:
    """Stable name of the slice carrying `cluster`'s endpoints of one address family."""
    full = f"{service}-{cluster}-{family.lower()}"
    return _fit(full, 253, full)


def synthetic_uid(kind: str, namespace: str, name: str) -> str:
    """A deterministic uid (UUID-shaped) for objects that only live in memory (file mode)."""
    h = hashlib.sha1(f"fleetgate/{kind}/{namespace}/{name}".encode()).hexdigest()
    return intern(f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{h[16:20]}-{h[20:32]}")  # one copy for every consumer


def managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our managed-by label, plus `extra`."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY}
    if extra:
        labels.update(extra)
    return labels
