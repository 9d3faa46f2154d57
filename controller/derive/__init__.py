"""Pure derivation of the MCS objects every member cluster should hold.

names (object names, uids, labels) → ipalloc (ClusterSetIPs) → conflicts (one exported
name across its exporters, and the ServiceExport conditions) → objects (one name's objects
in one consumer) → incremental (derive_imports: the whole fleet, by object identity).
"""
from __future__ import annotations

from ..derived import DerivedCluster, DerivedFleet, ImportObjects
from .conflicts import CONFLICT_REASONS
from .incremental import derive_imports
from .ipalloc import allocate_ips, parse_ranges
from .names import (ANNOTATION_DERIVED_SERVICE, IMPORT_API_VERSION, LABEL_MANAGED_BY, LABEL_SLICE_MANAGED_BY,
                    MANAGED_BY, SLICE_MANAGED_BY, amcs_name, slice_name, synthetic_uid)

__all__ = ["ANNOTATION_DERIVED_SERVICE", "CONFLICT_REASONS", "DerivedCluster", "DerivedFleet", "IMPORT_API_VERSION",
           "ImportObjects", "LABEL_MANAGED_BY", "LABEL_SLICE_MANAGED_BY", "MANAGED_BY", "SLICE_MANAGED_BY",
           "allocate_ips", "amcs_name", "derive_imports", "parse_ranges", "slice_name", "synthetic_uid"]
