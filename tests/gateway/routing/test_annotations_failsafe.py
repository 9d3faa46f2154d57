"""Invalid annotation values fail safe: a policy with an invalid value never sends traffic
where the valid policy would not. The parser's decisions as values, then a real gateway in
front of real pods showing where the traffic goes, then `fleetgate validate`."""
from __future__ import annotations

import asyncio
import collections
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.routing.annotations import _SPEC, ON_INVALID, parse_annotations
from gateway.routing.policy import DEFAULT_POLICY
from gateway_support import endpoint_slice, ingress, make_fleet_dir, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"
FG = "fleetgate.io/"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "annotations-invalid.md"

# one invalid value per canary annotation that can be invalid
INVALID_CANARY = {
    "canary-by-header-pattern": "([unclosed",
    "canary-by-query-pattern": "*oops",
    "canary-weight": "lots",
    "canary-weight-total": "0",
    "canary-by-header": "not a header",
}


def parse(annotations: dict[str, str]):
    return parse_annotations(annotations, namespace="demo", ingress="demo/x")


def errors_for(pa, key: str) -> list[str]:
    return [p.message for p in pa.problems if p.annotation == key and p.severity == "error"]


# --- the parser -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(INVALID_CANARY))
def test_an_invalid_canary_rule_disables_the_whole_canary(name):
    valid = {f"{NGINX}canary": "true", f"{NGINX}canary-by-cookie": "beta", f"{NGINX}canary-weight": "100"}
    assert parse(valid).canary is not None and not parse(valid).canary_disabled  # the control
    pa = parse({**valid, f"{NGINX}{name}": INVALID_CANARY[name]})
    assert pa.canary is None and pa.canary_disabled
    (msg,) = errors_for(pa, f"{NGINX}{name}")
    assert repr(INVALID_CANARY[name]) in msg and "canary is disabled" in msg
    assert not [p for p in pa.problems if p.severity == "warning"]


def test_an_invalid_canary_flag_makes_a_disabled_canary_not_a_main_ingress():
    pa = parse({f"{NGINX}canary": "ture", f"{NGINX}canary-weight": "100"})
    assert pa.canary is None and pa.canary_disabled
    assert "adds no route" in errors_for(pa, f"{NGINX}canary")[0]


def test_an_invalid_canary_rule_on_an_ingress_not_marked_canary_is_an_error_only():
    pa = parse({f"{NGINX}canary-weight": "lots"})
    assert pa.canary is None and not pa.canary_disabled
    (msg,) = errors_for(pa, f"{NGINX}canary-weight")
    assert "not marked canary" in msg and "disabled" not in msg


def test_an_invalid_mirror_value_turns_mirroring_off():
    valid = {"higress.io/mirror-target-service": "shadow", "higress.io/mirror-percentage": "50"}
    assert parse(valid).policy.mirror is not None
    for key, bad in (("higress.io/mirror-percentage", "half"), ("higress.io/mirror-request-body", "maybe"),
                     (f"{NGINX}mirror-target", "ftp://x")):
        pa = parse({**valid, key: bad})
        assert pa.policy.mirror is None, key
        assert "mirroring is off" in errors_for(pa, key)[0]


@pytest.mark.parametrize("protocol", ["GRPC", "GRPCS"])
def test_mirroring_a_grpc_route_is_refused_with_a_warning(protocol):
    mirror = {"higress.io/mirror-target-service": "shadow", "higress.io/mirror-percentage": "50"}
    assert parse({**mirror, f"{NGINX}backend-protocol": "HTTP"}).policy.mirror is not None  # the control
    pa = parse({**mirror, f"{NGINX}backend-protocol": protocol})
    assert pa.policy.mirror is None and pa.policy.backend_protocol == protocol
    (problem,) = [p for p in pa.problems if p.annotation == "mirror-*"]
    assert problem.severity == "warning" and "not supported on gRPC routes" in problem.message


@pytest.mark.parametrize("key,bad,field", [
    (f"{FG}cluster-weights", "zone-a=100,zone-b=x", "cluster_weights"),
    (f"{FG}cluster-weights", "zone-a=0", "cluster_weights"),
    (f"{FG}cluster-by-header", "x fleet", "cluster_by_header"),
    (f"{FG}cluster-priority", " , ", "cluster_priority"),
])
def test_an_invalid_cluster_policy_is_disabled_and_the_rest_of_the_policy_stays(key, bad, field):
    pa = parse({key: bad, f"{NGINX}proxy-read-timeout": "7"})
    assert getattr(pa.policy, field) is None
    assert pa.policy.read_timeout == 7.0  # other valid annotations still apply
    assert errors_for(pa, key)


def test_an_invalid_destination_leaves_the_ingress_backend():
    pa = parse({"mse.ingress.kubernetes.io/destination": "60% a.demo.svc:80\n30% b.demo.svc:80"})
    assert pa.policy.destinations == ()
    assert "weights sum to 90" in errors_for(pa, "mse.ingress.kubernetes.io/destination")[0]


def test_an_invalid_allow_list_admits_no_one():
    pa = parse({f"{NGINX}whitelist-source-range": "10.0.0.0/8,not-a-cidr"})
    assert pa.policy.whitelist == ()
    assert "refused" in errors_for(pa, f"{NGINX}whitelist-source-range")[0]


@pytest.mark.parametrize("name,bad,field,default", [
    ("proxy-read-timeout", "soon", "read_timeout", 60.0),
    ("load-balance", "fastest", "load_balance", "round_robin"),
    ("proxy-body-size", "huge", "max_body_size", None),
    ("backend-protocol", "FTP", "backend_protocol", "HTTP"),
    ("upstream-hash-by", "$cookie_x", "hash_by", None),
    ("force-ssl-redirect", "sometimes", "force_ssl_redirect", False),
])
def test_other_invalid_values_keep_the_documented_default(name, bad, field, default):
    pa = parse({f"{NGINX}{name}": bad})
    assert getattr(pa.policy, field) == default == getattr(DEFAULT_POLICY, field)
    (msg,) = errors_for(pa, f"{NGINX}{name}")
    assert ON_INVALID[name] in msg


def test_every_annotation_says_what_an_invalid_value_does_and_the_doc_lists_it():
    assert set(ON_INVALID) == set(_SPEC)
    doc = DOCS.read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \|$", doc, re.M))
    assert set(rows) == set(_SPEC), set(_SPEC) ^ set(rows)
    for name, effect in ON_INVALID.items():
        assert rows[name] == effect, name


# --- through a real gateway -------------------------------------------------------------------

async def get_backends(url: str, host: str, n: int, headers: dict | None = None) -> collections.Counter:
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(url + "/?canary=always", headers={"Host": host, **(headers or {})}) as r:
                seen[(await r.json())["backend"] if r.status == 200 else r.status] += 1
    return seen


async def test_invalid_canaries_leave_all_traffic_on_the_main_backend(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.32.1")
    can = await echo_backends("canary", host="127.0.32.2")
    fd.member("zone-a", served("main", main) + served("canary", can))
    # every canary asks for everything (header, cookie, query and weight 100) but one
    # of its values is invalid; canary Ingresses are named to sort before (be older than)
    # the mains, so one taken as a main Ingress would win the route
    every_rule = {f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary",
                  f"{NGINX}canary-by-cookie": "beta", "mse.ingress.kubernetes.io/canary-by-query": "canary",
                  f"{NGINX}canary-weight": "100"}
    cases = {**{name: {f"{NGINX}{name}": bad} for name, bad in INVALID_CANARY.items()},
             "canary": {f"{NGINX}canary": "ture"}, "valid": {}}
    docs = []
    for i, (case, bad) in enumerate(cases.items()):
        host = f"{case}.example.com"
        docs.append(ingress(f"main-{i}", [rule(host, ("/", "Prefix", "main"))]))
        docs.append(ingress(f"a-canary-{i}", [rule(host, ("/", "Prefix", "canary"))], annotations={**every_rule, **bad}))
    fd.hub(docs)
    gw = await start_gateway(fd)
    asking = {"x-canary": "always", "Cookie": "beta=always"}
    assert await get_backends(gw.url, "valid.example.com", 5, asking) == {"canary": 5}  # the control
    for case in cases.keys() - {"valid"}:
        assert await get_backends(gw.url, f"{case}.example.com", 10, asking) == {"main": 10}, case
        assert await get_backends(gw.url, f"{case}.example.com", 10) == {"main": 10}, case
    errors = [d for d in gw.gateway.diagnostics if d.severity == "error"]
    for i, case in enumerate(cases):
        if case == "valid":
            continue
        (d,) = [d for d in errors if d.object == f"Ingress/demo/a-canary-{i}"]
        assert d.path.endswith("ingresses.yaml") and f"{NGINX}{case}" in d.message


@pytest.fixture
def two_clusters(fleet_dir, echo_backends, start_gateway):
    async def make(annotations: dict, extra_hub: list | None = None, extra_a: list | None = None):
        fd = fleet_dir("zone-a", "zone-b")
        a = await echo_backends("a", host="127.0.32.11")
        b = await echo_backends("b", host="127.0.32.12", port=a.port)
        fd.member("zone-a", [*served("web", a), *(extra_a or [])])
        fd.member("zone-b", served("web", b))
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))], annotations=annotations),
                *(extra_hub or [])])
        return await start_gateway(fd)
    return make


@pytest.mark.parametrize("annotations", [
    {f"{FG}cluster-weights": "zone-a=100,zone-b=x"},
    {f"{FG}cluster-by-header": "x fleet"},
    {f"{FG}cluster-priority": ","},
], ids=["cluster-weights", "cluster-by-header", "cluster-priority"])
async def test_an_invalid_cluster_policy_spreads_as_without_it(two_clusters, annotations):
    gw = await two_clusters(annotations)
    seen = await get_backends(gw.url, "web.example.com", 20, {"x-fleet": "zone-b"})
    assert seen == {"a": 10, "b": 10}  # round robin over both clusters, as with no annotation
    (key,) = annotations
    assert [d for d in gw.gateway.diagnostics if d.severity == "error" and key in d.message
            and d.object == "Ingress/demo/web"]


async def test_an_invalid_destination_serves_the_ingress_backend(two_clusters, echo_backends):
    other = await echo_backends("other", host="127.0.32.13")
    dest = "mse.ingress.kubernetes.io/destination"
    gw = await two_clusters({dest: "60% other.demo.svc:80\n30% other.demo.svc:80"},
                            extra_hub=[ingress("ok", [rule("ok.example.com", ("/", "Prefix", "web"))],
                                               annotations={dest: "100% other.demo.svc:80"})],
                            extra_a=served("other", other))
    assert await get_backends(gw.url, "ok.example.com", 5) == {"other": 5}  # the control
    assert await get_backends(gw.url, "web.example.com", 10) == {"a": 5, "b": 5}


async def test_an_invalid_allow_list_refuses_every_client(two_clusters):
    gw = await two_clusters({f"{NGINX}whitelist-source-range": "127.0.0.0/8,localhost"})
    assert await get_backends(gw.url, "web.example.com", 3) == {403: 3}


async def test_an_invalid_mirror_value_mirrors_nothing(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.32.21")
    shadow = await echo_backends("shadow", host="127.0.32.22")
    fd.member("zone-a", served("main", main) + served("shadow", shadow))
    mirror = {"higress.io/mirror-target-service": "shadow"}
    fd.hub([ingress("bad", [rule("bad.example.com", ("/", "Prefix", "main"))],
                    annotations={**mirror, "higress.io/mirror-percentage": "all of it"}),
            ingress("good", [rule("good.example.com", ("/", "Prefix", "main"))], annotations=mirror)])
    gw = await start_gateway(fd)
    assert await get_backends(gw.url, "bad.example.com", 10) == {"main": 10}
    assert await get_backends(gw.url, "good.example.com", 5) == {"main": 5}
    # the good Ingress's copies were sent after the bad one's would have been: once they are
    # all in, any copy of a bad.example.com request would be too
    deadline = asyncio.get_running_loop().time() + 5
    while shadow.hits < 5 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert {r["headers"]["host"] for r in shadow.requests} == {"good.example.com-shadow"}
    assert shadow.hits == 5


# --- fleetgate validate -----------------------------------------------------------------------

def test_validate_reports_an_invalid_annotation_as_an_error_with_file_object_and_name(tmp_path):
    fd = make_fleet_dir(tmp_path / "fleet", ["zone-a"])
    fd.member("zone-a", [service("web"), endpoint_slice("web", [("10.0.0.1", 8080)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={f"{NGINX}canary-weight": "lots"})])
    ok = subprocess.run([sys.executable, "-m", "fleetgate.cli", "validate", "--fleet", str(fd.fleet_yaml)],
                        capture_output=True, timeout=60, text=True)
    assert ok.returncode == 1, ok.stdout + ok.stderr
    path = str(fd.root / "hub" / "ingresses.yaml")
    lines = [line for line in ok.stdout.splitlines()
             if path in line and "Ingress/demo/web" in line and f"{NGINX}canary-weight" in line]
    assert len(lines) == 1 and "warning" not in lines[0].lower(), ok.stdout
