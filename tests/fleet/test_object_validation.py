"""Objects that Kubernetes' API server would refuse are refused when read from files too:
bad addresses, ports and names become a diagnostic naming the file, the object and the field."""
from __future__ import annotations

from typing import Any

import pytest

from fleet.manifests import parse_file
from fleet.objects import ObjectError, parse_object


def slice_doc(*, address: str = "127.0.10.1", address_type: str = "IPv4", port: Any = 8080,
              name: str = "echo-a", port_name: str = "http", hostname: str | None = None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"addresses": [address]}
    if hostname is not None:
        endpoint["hostname"] = hostname
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "demo", "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": address_type, "ports": [{"name": port_name, "port": port}], "endpoints": [endpoint]}


def service_doc(*, name: str = "echo", port: Any = 80, target: Any = 8080, port_name: str = "http",
                cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": port_name, "port": port, "targetPort": target}]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"}, "spec": spec}


def ingress_doc(*, name: str = "echo", host: str = "echo.demo.local", service: str = "echo",
                port: dict[str, Any] | None = None, tls_host: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": [{"host": host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": service, "port": port or {"number": 80}}}}]}}]}
    if tls_host is not None:
        spec["tls"] = [{"hosts": [tls_host], "secretName": "echo-tls"}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "demo"}, "spec": spec}


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(ObjectError) as info:
        parse_object(doc)
    return str(info.value)


@pytest.mark.parametrize("address_type,address", [
    ("IPv4", "127.0.10.1"), ("IPv6", "fd00::1"), ("IPv6", "::1"), ("FQDN", "pod-1.example.com")])
def test_addresses_of_their_slices_type_are_accepted(address_type: str, address: str) -> None:
    sl = parse_object(slice_doc(address=address, address_type=address_type))
    assert sl.endpoints[0].addresses == (address,)


@pytest.mark.parametrize("address_type,address", [
    ("IPv4", "127.0.10.300"), ("IPv4", "127.0.10"), ("IPv4", "fd00::1"), ("IPv4", "127.000.10.1"),
    ("IPv4", "echo.local"), ("IPv4", "127.0.10.1\n"), ("IPv6", "127.0.10.1"), ("IPv6", "fd00:::1"),
    ("FQDN", "Bad_Name.example"), ("FQDN", "pod.example.com\n")])
def test_an_address_not_of_its_slices_type_names_the_field(address_type: str, address: str) -> None:
    message = error_of(slice_doc(address=address, address_type=address_type))
    assert message.startswith("endpoints[0].addresses[0]: "), message
    assert repr(address) in message


@pytest.mark.parametrize("port", [0, 65536, -1, 70000])
def test_endpoint_slice_ports_outside_1_to_65535_are_errors(port: int) -> None:
    assert error_of(slice_doc(port=port)).startswith("ports[0].port: ")


@pytest.mark.parametrize("doc,field", [
    (service_doc(port=0), "spec.ports[0].port"),
    (service_doc(port=65536), "spec.ports[0].port"),
    (service_doc(target=0), "spec.ports[0].targetPort"),
    (service_doc(target=99999), "spec.ports[0].targetPort"),
    (service_doc(target="http--x"), "spec.ports[0].targetPort"),
    (service_doc(target="8080"), "spec.ports[0].targetPort"),  # a name needs a letter
    (service_doc(port_name="HTTP"), "spec.ports[0].name"),
    (service_doc(name="Echo"), "metadata.name"),
    (service_doc(name="echo.v1"), "metadata.name"),  # a Service name is a label, not a subdomain
    (service_doc(cluster_ip="10.0.0.256"), "spec.clusterIP"),
    (ingress_doc(port={"number": 0}), "spec.rules[0].http.paths[0].backend.service.port.number"),
    (ingress_doc(port={"number": 65536}), "spec.rules[0].http.paths[0].backend.service.port.number"),
    (ingress_doc(port={"name": "a-very-long-port-name"}), "spec.rules[0].http.paths[0].backend.service.port.name"),
    (ingress_doc(service="echo_svc"), "spec.rules[0].http.paths[0].backend.service.name"),
    (ingress_doc(host="127.0.0.1"), "spec.rules[0].host"),
    (ingress_doc(host="echo..local"), "spec.rules[0].host"),
    (ingress_doc(host="-echo.local"), "spec.rules[0].host"),
    (ingress_doc(tls_host="bad host"), "spec.tls[0].hosts[0]"),
    (ingress_doc(name="Echo_1"), "metadata.name"),
    (slice_doc(name="echo-a_b"), "metadata.name"),
    (slice_doc(name="echo-a\n"), "metadata.name"),
    (slice_doc(port_name="Http"), "ports[0].name"),
    (slice_doc(hostname="pod.0"), "endpoints[0].hostname"),
])
def test_bad_ports_and_names_are_errors_naming_the_field(doc: dict[str, Any], field: str) -> None:
    assert error_of(doc).startswith(f"{field}: "), error_of(doc)


def test_the_namespace_must_be_a_label() -> None:
    doc = service_doc()
    doc["metadata"]["namespace"] = "Demo.Space"
    assert error_of(doc).startswith("metadata.namespace: ")


@pytest.mark.parametrize("doc", [
    service_doc(target="http"), service_doc(target=65535), service_doc(cluster_ip="None"),
    service_doc(cluster_ip="10.96.0.10"), service_doc(cluster_ip="fd00::a"),
    ingress_doc(host="*.demo.local"), ingress_doc(host="Echo.Demo.Local"),  # matched case-insensitively
    ingress_doc(name="echo.v1", tls_host="*.demo.local"), ingress_doc(port={"name": "http-alt"}),
    slice_doc(hostname="db-0", name="echo.zone-a"),
])
def test_what_kubernetes_accepts_is_accepted(doc: dict[str, Any]) -> None:
    assert parse_object(doc).meta.name == doc["metadata"]["name"]


def test_a_bad_address_in_a_file_is_a_diagnostic_with_file_object_and_field() -> None:
    import yaml
    text = yaml.safe_dump_all([service_doc(), slice_doc(address="127.0.10.300")])
    objects, diags = parse_file("zone-a/echo.yaml", text)
    assert [o.kind for o in objects] == ["Service"]
    assert [str(d) for d in diags] == [
        "zone-a/echo.yaml: EndpointSlice/demo/echo-a: endpoints[0].addresses[0]: "
        "'127.0.10.300' is not an IPv4 address"]
    assert diags[0].severity == "error"


def test_the_ipv4_fast_path_agrees_with_ipaddress() -> None:
    import ipaddress
    import random

    from fleet.validation import address
    rand = random.Random(7)
    samples = ["0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 "]
    samples += [".".join(str(rand.choice([rand.randrange(256), rand.randrange(1000), "00", "08"])) for _ in range(4))
                for _ in range(2000)]
    for text in samples:
        try:
            ipaddress.IPv4Address(text)
            valid = True
        except ValueError:
            valid = False
        assert (address(text, "IPv4") is None) == valid, text


def test_equal_endpoints_are_one_object_and_a_shared_one_is_still_checked_per_slice_type() -> None:
    """Slices repeating an endpoint (a derived slice in each consumer) share its view; the
    table is keyed by the address type too, so an address valid in an IPv4 slice met again
    in an IPv6 slice is checked (and refused) there, and a non-boolean condition equal to a
    held one (1 == True) is refused, not found."""
    a = parse_object(slice_doc(address="10.1.2.3", hostname="pod-a"))
    b = parse_object(slice_doc(address="10.1.2.3", hostname="pod-a", name="echo-b"))
    assert a.endpoints[0] is b.endpoints[0]
    assert parse_object(slice_doc(address="10.1.2.4")).endpoints[0] is not a.endpoints[0]
    assert error_of(slice_doc(address="10.1.2.3", address_type="IPv6")).startswith("endpoints[0].addresses[0]: ")
    doc = slice_doc(address="10.1.2.3", hostname="pod-a")
    doc["endpoints"][0]["conditions"] = {"ready": 1}
    assert error_of(doc).startswith("endpoints[0].conditions.ready: ")


def test_endpoints_no_slice_holds_are_swept_from_the_table() -> None:
    """The table holds no endpoint alive on its own: entries only it holds go when it grows."""
    from fleet import objects

    table = objects._ENDPOINTS
    kept = parse_object(slice_doc(address="10.200.0.1"))
    for i in range(2 * table.floor + 10):  # bounded: two sweeps' worth of distinct endpoints
        parse_object(slice_doc(address=f"10.201.{i // 250}.{i % 250 + 1}"))
    assert len(table.values) <= 2 * table.floor
    table.sweep()
    assert kept.endpoints[0] in table.values.values()
    assert not any(k[0][0].startswith("10.201.") for k in table.values)


def test_equal_label_sets_are_one_read_only_map() -> None:
    """Labels and annotations repeat across every consumer's objects: one read-only map per
    distinct content, equal to (and rendered like) a dict."""
    a = parse_object(slice_doc(name="echo-a"))
    b = parse_object(slice_doc(name="echo-b"))
    assert a.meta.labels is b.meta.labels and a.meta.labels == {"kubernetes.io/service-name": "echo"}
    assert a.meta.annotations is b.meta.annotations and a.meta.annotations == {}
    with pytest.raises(TypeError):
        a.meta.labels["x"] = "y"  # type: ignore[index]
    other = slice_doc(name="echo-c")
    other["metadata"]["labels"]["team"] = "x"
    assert parse_object(other).meta.labels is not a.meta.labels


def test_an_empty_optional_string_reads_as_unset() -> None:
    """zone, nodeName, appProtocol, trafficDistribution... as "" are unset, as when absent:
    Kubernetes omits them when empty and so do the controller's renders, so the view of a
    source that spells "" equals the view of the objects derived from it as read back."""
    doc = slice_doc()
    doc["endpoints"][0].update(zone="", nodeName="", conditions={"ready": True})
    doc["ports"][0]["appProtocol"] = ""
    es = parse_object(doc)
    assert es == parse_object(slice_doc() | {"endpoints": [{"addresses": ["127.0.10.1"], "conditions": {"ready": True}}]})
    assert (es.endpoints[0].zone, es.endpoints[0].node_name, es.ports[0].app_protocol) == (None, None, None)
    zoned = slice_doc()
    zoned["endpoints"][0].update(zone="az-1", nodeName="node-1")
    assert (parse_object(zoned).endpoints[0].zone, parse_object(zoned).endpoints[0].node_name) == ("az-1", "node-1")
    svc = service_doc()
    svc["spec"].update(trafficDistribution="", internalTrafficPolicy="", externalName="")
    svc["spec"]["ports"][0]["appProtocol"] = ""
    assert parse_object(svc) == parse_object(service_doc())
    imported = {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                "metadata": {"name": "echo", "namespace": "demo"},
                "spec": {"type": "ClusterSetIP", "ports": [{"port": 80, "appProtocol": ""}],
                         "trafficDistribution": "", "internalTrafficPolicy": ""}}
    si = parse_object(imported)
    assert (si.ports[0].app_protocol, si.traffic_distribution, si.internal_traffic_policy) == (None, None, None)
