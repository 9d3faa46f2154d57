"""The Grafana dashboard and the PrometheusRule ask only for metrics fleetgate exports.

A real `fleetgate up` (gateway, controller and DNS in one process, one admin port) serves
HTTP and DNS traffic; its /metrics is scraped, and every metric name in every dashboard
panel expression and every alert expression must be in it, except the names listed in
PENDING_REQUEST_PATH_METRICS: the per-request series the rebuilt HTTP/1 exchange will
count (issue 15 part 2). That list only shrinks: a name in it that is exported already
fails the test too, so whoever adds a metric removes it here.
"""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import yaml

from tests.fleetgate.process_support import free_port, start, wait_ready, write_fleet
from tests.fleetgate.test_operations import backend  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "manifests" / "grafana" / "fleetgate-dashboard.json"
RULES = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"

# Named by the dashboard and alerts, not exported yet (none left: every per-request series
# is exported; a name added to a panel before its metric exists goes here until it does).
PENDING_REQUEST_PATH_METRICS: set[str] = set()
# labels the dashboard and alerts select on that the exported series do not carry yet
PENDING_LABELS: dict[str, set[str]] = {}

NAME = re.compile(r"\bfleetgate_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v.get("definition")]
    return exprs


def alert_expressions() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["spec"]["groups"] for r in g["rules"]]


def family(name: str) -> str:
    """A histogram's _bucket/_sum/_count series belong to its family."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def referenced(exprs: list[str]) -> set[str]:
    """Metric family names in PromQL."""
    return {family(n) for e in exprs for n in NAME.findall(e)}


def exported(exposition: str) -> dict[str, set[str]]:
    """family name -> label names seen, from `# TYPE` lines and samples (counters by their
    `_total` name, histograms by their family name)."""
    families: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            families.setdefault(name + ("_total" if kind == "counter" and not name.endswith("_total") else ""),
                                set())
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        name = name.split(" ")[0]
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', rest)) - {"le"}
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                name = name[: -len(suffix)]
        families.setdefault(name, set()).update(labels)
    return families


def selected_labels(exprs: list[str]) -> dict[str, set[str]]:
    """name -> label names used in its selector braces."""
    out: dict[str, set[str]] = {}
    for e in exprs:
        for m in re.finditer(r"\b(fleetgate_[a-z0-9_]+)\{([^}]*)\}", e):
            out.setdefault(family(m.group(1)), set()).update(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", m.group(2)))
    return out


async def test_every_dashboard_and_alert_metric_is_exported_after_real_traffic(tmp_path, backend):  # noqa: F811
    from dnslib import DNSRecord

    fleet = write_fleet(tmp_path / "fleet", backend)
    http, admin, dns = (f"127.0.0.1:{free_port()}" for _ in range(3))
    proc = start(["up", "--fleet", str(fleet), "--http", http, "--admin", admin, "--dns", dns,
                  "--log-level", "warning", "--drain-delay", "0"])
    try:
        await wait_ready(admin, proc)
        async with aiohttp.ClientSession() as s:
            for host in ("web.example.com", "web.example.com", "nope.example"):
                async with s.get(f"http://{http}/", headers={"Host": host}) as r:
                    await r.read()
            dns_host, dns_port = dns.rsplit(":", 1)
            for qtype in ("A", "SRV", "AAAA"):
                await asyncio.to_thread(lambda q=qtype: DNSRecord.question(
                    "web.demo.svc.clusterset.local", q).send(dns_host, int(dns_port), timeout=5))
            async with s.get(f"http://{admin}/metrics") as r:
                assert r.status == 200
                exposition = await r.text()
    finally:
        proc.terminate()
        proc.wait(15)
    families = exported(exposition)
    # real traffic was counted
    assert re.search(r'^fleetgate_http_requests_total\{[^}]*ingress="demo/web"[^}]*\} 2\.0$', exposition, re.M)
    assert re.search(r'^fleetgate_dns_queries_total\{qtype="SRV",', exposition, re.M)

    exprs = dashboard_expressions() + alert_expressions()
    names = referenced(exprs)
    assert len(names) >= 20
    missing = sorted(n for n in names - PENDING_REQUEST_PATH_METRICS if n not in families)
    assert missing == [], f"named by the dashboard or alerts but not exported: {missing}"
    done = sorted(n for n in PENDING_REQUEST_PATH_METRICS if n in families)
    assert done == [], f"exported now: remove from PENDING_REQUEST_PATH_METRICS: {done}"
    assert PENDING_REQUEST_PATH_METRICS <= names, "a pending name no panel or alert uses"
    # the operator's request family carries what the error-ratio alert and panels select on
    assert re.search(r'^fleetgate_ingress_requests_total\{[^}]*ingress="demo/web"[^}]*status_class="2xx"[^}]*\} 2\.0$',
                     exposition, re.M)
    for name, labels in selected_labels(exprs).items():
        if name in PENDING_REQUEST_PATH_METRICS or not families[name]:
            continue  # no sample of it in this run (no retry happened, say): no labels to compare
        unknown = labels - families[name] - PENDING_LABELS.get(name, set())
        assert not unknown, f"{name} has no label {sorted(unknown)} (exported: {sorted(families[name])})"
