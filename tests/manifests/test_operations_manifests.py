"""manifests/ for running it in production (issue 15): drain timing in the Deployments,
the optional HPA components, the Grafana dashboard and the PrometheusRule."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.test_manifests import MANIFESTS, _unknown_fields, container, one, overlay, pod_spec
from tests.tools import require_tool


def _flag(args: list[str], name: str, default: float) -> float:
    return float(args[args.index(name) + 1]) if name in args else default


@pytest.mark.parametrize("name,deployment", [("hub", "fleetgate-gateway"), ("member", "fleetgate-dns")])
def test_shutdown_fits_the_grace_period(name: str, deployment: str) -> None:
    """preStop (the pod keeps serving while it leaves the endpoints) + --drain-delay +
    --drain-timeout, with a margin, fit in terminationGracePeriodSeconds."""
    dep = one(overlay(name), "Deployment", deployment)
    c = container(dep)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3, "endpoint controllers and load balancers need a few seconds"
    delay = _flag(c["args"], "--drain-delay", 5.0)
    assert delay == 0, "the preStop sleep already waited: both would add up"
    timeout = _flag(c["args"], "--drain-timeout", 10.0)
    assert pre_stop + delay + timeout + 5 <= pod_spec(dep)["terminationGracePeriodSeconds"]


def _with_component(tmp_path: Path, base: str, component: str) -> tuple[dict[str, Any], ...]:
    """Build overlays/<base> plus components/<component> the way an operator would add it."""
    kubectl = require_tool("kubectl")
    here = tmp_path / "overlay"
    here.mkdir()
    rel = lambda p: os.path.relpath(MANIFESTS / p, here)  # noqa: E731 - kustomize wants relative paths
    (here / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel(f"overlays/{base}")], "components": [rel(f"components/{component}")]}))
    proc = subprocess.run([kubectl, "kustomize", str(here)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


@pytest.mark.parametrize("base,component,deployment", [("hub", "hpa/gateway", "fleetgate-gateway"),
                                                       ("member", "hpa/dns", "fleetgate-dns")])
def test_hpa_component_scales_its_deployment_on_cpu(tmp_path: Path, base: str, component: str,
                                                   deployment: str) -> None:
    objs = _with_component(tmp_path, base, component)
    hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpas) == 1
    hpa = hpas[0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert _unknown_fields(hpa, "V2HorizontalPodAutoscaler", "hpa") == []
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment)
    dep = one(objs, "Deployment", deployment)
    assert dep["metadata"]["namespace"] == hpa["metadata"]["namespace"]
    assert "replicas" not in dep["spec"], "kubectl apply would reset the autoscaler's choice"
    assert container(dep)["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # without the component the overlay has no autoscaler and keeps its replicas
    assert not [o for o in overlay(base) if o["kind"] == "HorizontalPodAutoscaler"]
    assert one(overlay(base), "Deployment", deployment)["spec"]["replicas"] >= 2


def test_dashboard_is_importable_grafana_json() -> None:
    doc = json.loads((MANIFESTS / "grafana" / "fleetgate-dashboard.json").read_text())
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    assert "id" not in doc or doc["id"] is None, "an id ties the JSON to one Grafana instance"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [p for p in doc["panels"] if p["type"] != "row"]
    assert len(graphs) >= 20
    for p in graphs:
        assert p["targets"] and all(t["expr"].strip() and t["refId"] for t in p["targets"]), p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    titles = " ".join(p["title"].lower() for p in graphs)
    for needed in ("request rate", "error ratio", "p99", "traffic split", "failover", "ejection", "mirror",
                   "upstream connections", "dns", "reconcile", "sync lag"):
        assert needed in titles, needed
    names = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "ingress", "cluster"} <= names


def test_grafana_kustomization_makes_the_sidecar_configmap() -> None:
    from tests.manifests.test_manifests import _build
    (cm,) = _build("grafana")
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["fleetgate-dashboard.json"])["uid"] == "fleetgate-overview"


def test_prometheus_rule_has_the_alerts_operators_need() -> None:
    from tests.manifests.test_manifests import _build
    (rule,) = _build("monitoring")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"FleetgateHighErrorRatio", "FleetgateNoHealthyEndpoint", "FleetgateMemberClusterUnreachable",
            "FleetgateCertificateExpiring"} <= alerts.keys()
    for name, r in alerts.items():
        assert r["expr"].strip() and r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"], name
