"""manifests/: the RBAC the overlays build. Every rule names a real resource and verb,
each component's ServiceAccount gets exactly the access it needs (no more), every account
a Deployment runs as exists and is bound, and users may export Services but only read
imports. Static checks of what `kubectl kustomize` builds (test_manifests.py's helpers;
the builds skip where kubectl is not installed, saying how to install it).
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.test_manifests import NAMESPACE, OVERLAYS, _build, of_kind, one, overlay, pod_spec

VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
# Built-in resources an RBAC rule may name: group -> {resource: namespaced}. The MCS and
# ClusterProperty resources come from the CRDs themselves (see _rbac_resources).
BUILTIN_RESOURCES: dict[str, dict[str, bool]] = {
    "": {"namespaces": False, "services": True, "services/status": True, "secrets": True,
         "configmaps": True, "endpoints": True, "pods": True, "events": True},
    "discovery.k8s.io": {"endpointslices": True},
    "networking.k8s.io": {"ingresses": True, "ingresses/status": True, "ingressclasses": False},
    "coordination.k8s.io": {"leases": True},
}


# --- RBAC ------------------------------------------------------------------------------

def _rbac_resources(objs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, bool]]:
    known = {group: dict(resources) for group, resources in BUILTIN_RESOURCES.items()}
    for crd in of_kind(_build("base/crds"), "CustomResourceDefinition"):
        spec = crd["spec"]
        group = known.setdefault(spec["group"], {})
        namespaced = spec["scope"] == "Namespaced"
        group[spec["names"]["plural"]] = namespaced
        if all("status" in v.get("subresources", {}) for v in spec["versions"]):
            group[spec["names"]["plural"] + "/status"] = namespaced
    return known


@pytest.mark.parametrize("name", OVERLAYS)
def test_rbac_rules_name_real_resources_and_verbs(name: str) -> None:
    objs = overlay(name)
    known = _rbac_resources(objs)
    for role in of_kind(objs, "Role") + of_kind(objs, "ClusterRole"):
        rname = role["metadata"]["name"]
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= VERBS, f"{rname}: {rule['verbs']}"
            for group in rule["apiGroups"]:
                assert group in known, f"{rname}: unknown API group {group!r}"
                for resource in rule["resources"]:
                    assert resource in known[group], f"{rname}: {group}/{resource} does not exist"
                    if role["kind"] == "Role":
                        assert known[group][resource], f"Role {rname} names cluster-scoped {resource}"
            if "resourceNames" in rule:
                assert not {"create", "list", "watch", "deletecollection"} & set(rule["verbs"]), \
                    f"{rname}: resourceNames cannot restrict {rule['verbs']}"


def _grants(scope: str, group: str, resource: str, verbs: str, name: str = "*") -> set[str]:
    return {f"{scope} {group}/{resource}[{name}] {verb}" for verb in verbs.split()}


def _effective(objs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """ServiceAccount -> the grants its bindings give it, as `scope group/resource[name] verb`."""
    roles = {(r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
             for r in of_kind(objs, "Role") + of_kind(objs, "ClusterRole")}
    out: dict[str, set[str]] = {}
    for binding in of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding"):
        ns = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']}: no {ref['kind']} {ref['name']}"
        scope = ns if binding["kind"] == "RoleBinding" else "cluster"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            grants = out.setdefault(f"{subject['namespace']}/{subject['name']}", set())
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for name in rule.get("resourceNames", ["*"]):
                            grants |= _grants(scope, group, resource, " ".join(rule["verbs"]), name)
    return out


READ = "get list watch"
WRITE = "create update patch delete"
MCS = "multicluster.x-k8s.io"
EXPECTED_GRANTS = {
    "hub": {
        f"{NAMESPACE}/fleetgate-gateway":
            _grants("cluster", "networking.k8s.io", "ingresses", READ)
            | _grants("cluster", "networking.k8s.io", "ingressclasses", READ)
            | _grants("cluster", "", "secrets", READ)
            | _grants("cluster", "networking.k8s.io", "ingresses/status", "update patch"),
        f"{NAMESPACE}/fleetgate-controller":
            _grants(NAMESPACE, "coordination.k8s.io", "leases", "get create update"),
    },
    "member": {
        f"{NAMESPACE}/fleetgate-dns":
            _grants("cluster", MCS, "serviceimports", READ)
            | _grants("cluster", "discovery.k8s.io", "endpointslices", READ),
        f"{NAMESPACE}/fleetgate-gateway-member":
            _grants("cluster", "", "services", READ)
            | _grants("cluster", "discovery.k8s.io", "endpointslices", READ),
        f"{NAMESPACE}/fleetgate-controller-member":
            _grants("cluster", "", "namespaces", READ)
            | _grants("cluster", MCS, "serviceexports", READ)
            | _grants("cluster", MCS, "serviceexports/status", "update patch")
            | _grants("cluster", "", "services", f"{READ} {WRITE}")
            | _grants("cluster", "discovery.k8s.io", "endpointslices", f"{READ} {WRITE}")
            | _grants("cluster", MCS, "serviceimports", f"{READ} {WRITE}")
            | _grants("cluster", MCS, "serviceimports/status", "update patch")
            | _grants("cluster", "about.k8s.io", "clusterproperties", "get update",
                      name="cluster.clusterset.k8s.io")
            | _grants("cluster", "about.k8s.io", "clusterproperties", "create"),
    },
}


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_component_gets_exactly_the_access_it_needs(name: str) -> None:
    effective = _effective(overlay(name))
    assert effective.keys() == EXPECTED_GRANTS[name].keys()
    for account, expected in EXPECTED_GRANTS[name].items():
        granted = effective[account]
        assert granted == expected, (f"{account}: extra {sorted(granted - expected)}, "
                                     f"missing {sorted(expected - granted)}")


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_accounts_exist_and_are_bound(name: str) -> None:
    objs = overlay(name)
    accounts = {sa["metadata"]["name"] for sa in of_kind(objs, "ServiceAccount")}
    bound = {a.split("/", 1)[1] for a in _effective(objs)}
    for dep in of_kind(objs, "Deployment"):
        account = pod_spec(dep)["serviceAccountName"]
        assert account in accounts, f"{dep['metadata']['name']}: no ServiceAccount {account}"
        assert account in bound, f"{dep['metadata']['name']}: ServiceAccount {account} is bound to nothing"
    assert bound <= accounts
    assert accounts <= bound, f"unbound ServiceAccounts: {accounts - bound}"
    for secret in of_kind(objs, "Secret"):
        assert secret["type"] == "kubernetes.io/service-account-token"
        assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] in accounts


def test_users_may_export_but_only_read_imports() -> None:
    objs = overlay("member")
    view = one(objs, "ClusterRole", "fleetgate-mcs-view")
    edit = one(objs, "ClusterRole", "fleetgate-mcs-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert {v for r in view["rules"] for v in r["verbs"]} == set(READ.split())
    assert {res for r in edit["rules"] for res in r["resources"]} == {"serviceexports"}
