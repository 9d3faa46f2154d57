"""Both fast-path implementations, a zone that has learned answers, and a datagram corpus.

The compiled module is skipped (with the reason) when it is not built, unless
FLEETGATE_REQUIRE_COMPILED=1 (CI sets it): then a missing build fails the test.
"""
from __future__ import annotations

import struct
from types import ModuleType

from dnslib import EDNS0, EDNSOption, DNSRecord

from controller.derive import derive_imports
from dnsplugin.codec import _fastpath_py
from dnsplugin.resolver import resolve
from dnsplugin.zone import Zone, build_zone
from tests.tools import compiled_or_skip as require_compiled
from tests.dnsplugin.dnsclient_support import question
from tests.dnsplugin.fleets_support import two_cluster_fleet

PURE: ModuleType = _fastpath_py
try:
    from dnsplugin.codec import _fastpath as _compiled  # type: ignore[attr-defined]
    COMPILED: ModuleType | None = _compiled
    WHY = ""
except ImportError as err:  # not built
    COMPILED = None
    WHY = ("the compiled DNS fast path is not built (%s); build it with "
           "`/work/venv/bin/pip install -e .` or `python setup.py build_ext --inplace`" % err)


def compiled_or_skip() -> ModuleType:
    return require_compiled(COMPILED, WHY)


Z = "svc.clusterset.local"
NAMES = (f"web.demo.{Z}", f"WEB.Demo.{Z}", f"_http._tcp.web.demo.{Z}", f"db.demo.{Z}",
         f"mysql-0.zone-b.db.demo.{Z}", f"Mysql-0.db.demo.{Z}", f"dual.demo.{Z}", f"nope.demo.{Z}",
         "dns-version.clusterset.local", "clusterset.local", "example.com", "1.0.1.10.in-addr.arpa")
QTYPES = ("A", "AAAA", "SRV", "TXT", "ANY", "NS", "SOA", "PTR", "HTTPS", "TYPE999")


def with_rd(data: bytes, rd: bool) -> bytes:
    return data[:2] + bytes(((data[2] & 0xFE) | int(rd),)) + data[3:]


def learned_zone(cluster: str = "zone-a") -> Zone:
    """zone-a of the two-cluster fleet after the valid corpus went through resolve once."""
    view = derive_imports(two_cluster_fleet(), clusters=[cluster]).per_cluster[cluster]
    zone = build_zone(view.service_imports, view.endpoint_slices)
    for data in valid_queries():
        resolve(zone, data, learn=True)
    return zone


def valid_queries() -> list[bytes]:
    out = []
    qid = 0
    for name in NAMES:
        for qtype in QTYPES:
            for rd in (False, True):
                for edns in (None, 512, 1232, 4096):
                    qid += 1
                    out.append(with_rd(question(name, qtype, edns=edns, qid=qid), rd))
    return out


def odd_queries(base: bytes) -> list[bytes]:
    """Near misses and malformed shapes around one learned query."""
    cookie = DNSRecord.parse(base)
    cookie.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, b"12345678")]))
    v1 = DNSRecord.parse(base)
    v1.add_ar(EDNS0(udp_len=1232, version=1))
    odd = [base + b"\x00",                                      # a trailing byte
           base[:-2] + b"\x00\x03",                              # class CH
           base[:3] + b"\x20" + base[4:],                        # AD set
           base[:2] + b"\x80" + base[3:],                        # a response
           base[:2] + b"\x10" + base[3:],                        # opcode 2 (STATUS)
           base[:4] + struct.pack("!H", 2) + base[6:] + base[12:],  # two questions
           base[:4] + b"\x00\x00" + base[6:],                    # no question
           bytes(cookie.pack()), bytes(v1.pack()),
           base[:12] + b"\xc0\x0c" + base[-4:],                  # a compression pointer as qname
           base[:12] + b"\x40" + b"a" * 64 + b"\x00" + base[-4:],  # a 64-byte label
           base.upper(), base.lower(), base[:2] + base[2:].swapcase(),
           b"", b"\x00", base[:11], base[:12], base[:13]]
    odd += [base[:cut] for cut in range(14, len(base))]          # every truncation
    return odd


def corpus() -> list[bytes]:
    valid = valid_queries()
    out = list(valid)
    for base in valid[::7]:
        out += odd_queries(base)
    return out
