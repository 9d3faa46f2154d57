"""Answer one DNS query from a Zone: request bytes in, response bytes out.

The hot path does not parse with dnslib: it locates the question (header, qname labels,
qtype, qclass) and an optional trailing OPT record, looks the lowercased question up in
the zone's prebuilt answers, and splices the request's ID, RD bit and question (so the
answer echoes the question's case) around the prebuilt tail. Anything unusual goes to the
cold path, which uses dnslib to decide between an answer and FORMERR. Pure: no I/O.

With `learn`, an answer served from the zone's memo is also recorded in `zone.fast`,
keyed by the whole query from byte 2 on, lowercased: the UDP listener's fast path then
answers the next such query with one lookup and a patch of ID and question case
(dnsplugin.codec; over TCP too when the entry was learned whole).
"""
from __future__ import annotations

import struct
from typing import Final

from dnslib import DNSError, DNSRecord

from . import reverse
from .zone import Zone

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

UDP_MIN, UDP_CAP, TCP_MAX = 512, 1232, 65535
_IN: Final = b"\x00\x01"
_COUNTS_NONE = b"\x00\x00\x00\x00\x00\x00\x00\x00"
_COUNTS_Q = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_Q_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_COUNTS_NEG = b"\x00\x01\x00\x00\x00\x01\x00\x00"
_COUNTS_NEG_OPT = b"\x00\x01\x00\x00\x00\x01\x00\x01"
# Our OPT: root owner, type 41, our UDP cap, extended rcode 0, version 0, no flags, no options.
OPT_RR: Final = b"\x00\x00\x29" + struct.pack("!H", UDP_CAP) + b"\x00\x00\x00\x00\x00\x00"
_OPT_BADVERS: Final = b"\x00\x00\x29" + struct.pack("!H", UDP_CAP) + b"\x01\x00\x00\x00\x00\x00"
# Flags byte 2 of an authoritative answer (QR AA), indexed by the request's RD bit; byte 3 = rcode.
_AA: Final = (b"\x84", b"\x85")
_AA_NOERROR: Final = (b"\x84\x00", b"\x85\x00")
_AA_NXDOMAIN: Final = (b"\x84\x03", b"\x85\x03")


class _Forward:
    """Sentinel: the name is outside the zone and the caller forwards it upstream."""

    def __repr__(self) -> str:
        return "FORWARD"


FORWARD: Final = _Forward()

Stats = dict[tuple[int, int], int]  # (qtype, rcode) -> count


def _count(stats: Stats | None, qtype: int, rcode: int) -> None:
    if stats is not None:
        k = (qtype, rcode)
        stats[k] = stats.get(k, 0) + 1


def error_reply(data: bytes, rcode: int, *, question_end: int = 0) -> bytes | None:
    """A header-only reply (plus the question when it was located); None without a header."""
    if len(data) < 12:
        return None
    flags = bytes(((data[2] & 0x79) | 0x80, rcode & 0x0F))  # QR, keep opcode and RD
    if question_end:
        return data[:2] + flags + _COUNTS_Q + data[12:question_end]
    return data[:2] + flags + _COUNTS_NONE


def resolve(zone: Zone | None, data: bytes, *, tcp: bool = False, forward: bool = False,
            stats: Stats | None = None, learn: bool = False) -> bytes | _Forward | None:
    """The response to `data`, FORWARD for an outside name when forwarding, or None to drop."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        if data[2] & 0xF8 or data[4:6] != b"\x00\x01" or zone is None:
            return _unusual(zone, data, tcp, forward, stats)
        i = 12
        n = data[12]
        while n:
            if n > 63:
                return _unusual(zone, data, tcp, forward, stats)
            i += n + 1
            n = data[i]
        qend = i + 5
        size = len(data)
        if size == qend and data[6:12] == b"\x00\x00\x00\x00\x00\x00":
            opt = False
            limit = TCP_MAX if tcp else UDP_MIN
        elif (data[6:12] == b"\x00\x00\x00\x00\x00\x01" and data[qend] == 0 and data[qend + 1] == 0
              and data[qend + 2] == 41 and data[qend + 6] == 0
              and qend + 11 + ((data[qend + 9] << 8) | data[qend + 10]) == size):
            opt = True
            if tcp:
                limit = TCP_MAX
            else:
                limit = (data[qend + 3] << 8) | data[qend + 4]
                limit = UDP_MIN if limit < UDP_MIN else (UDP_CAP if limit > UDP_CAP else limit)
        else:
            return _unusual(zone, data, tcp, forward, stats)
        if data[qend - 2:qend] != _IN:
            return _unusual(zone, data, tcp, forward, stats)
        key = data[12:i].lower() + data[i:qend]
        entry = zone.wire.get(key)
        if entry is None:
            found = zone.lookup(key)
            if found == -1:  # outside the zone: maybe one of our addresses' reverse names
                found = reverse.lookup(zone, key) or -1
            if found == NXDOMAIN:
                _count(stats, (data[i + 1] << 8) | data[i + 2], NXDOMAIN)
                resp = data[:2] + _AA_NXDOMAIN[data[2] & 1] + (_COUNTS_NEG_OPT if opt else _COUNTS_NEG) \
                    + data[12:qend] + zone.soa_rr
                if opt:
                    resp += OPT_RR
                return resp if len(resp) <= limit else _truncated(data, qend, NXDOMAIN, opt)
            if found == -1:
                if forward:
                    return FORWARD
                _count(stats, (data[i + 1] << 8) | data[i + 2], REFUSED)
                return _refused(data, qend, opt)
            entry = found  # type: ignore[assignment]
        assert entry is not None
        qtype = (data[i + 1] << 8) | data[i + 2]
        _count(stats, qtype, NOERROR)
        whole = True
        if opt:
            resp = data[:2] + _AA_NOERROR[data[2] & 1] + entry[2] + data[12:qend] + entry[1] + OPT_RR
            if len(resp) > limit:
                whole = False
                resp = data[:2] + _AA_NOERROR[data[2] & 1] + entry[5] + data[12:qend] + entry[4] + OPT_RR
        else:
            resp = data[:2] + _AA_NOERROR[data[2] & 1] + entry[0] + data[12:qend] + entry[1]
            if len(resp) > limit:
                whole = False
                resp = data[:2] + _AA_NOERROR[data[2] & 1] + entry[3] + data[12:qend] + entry[4]
        # Dropping Additional is allowed without TC; beyond that the client must retry over TCP.
        if len(resp) > limit:
            return _truncated(data, qend, NOERROR, opt)
        if learn and zone.wire.get(key) is entry:
            # Over TCP, learn only what UDP would answer with the same bytes (whole, and within
            # the query's UDP size), so one learned entry serves both transports.
            if not tcp or len(resp) <= _udp_limit(data, qend, opt):
                _learn(zone, data, resp, i, qend, qtype, whole)
        return resp
    except IndexError:
        return _unusual(zone, data, tcp, forward, stats)


# Bytes 2..12 of a query the UDP fast path may take: QUERY, RD off or on, no other flag,
# QD=1, AN=NS=0, and AR=0 or 1 (one OPT without options).
_PLAIN = frozenset({b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00", b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
                    b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01", b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"})
FAST_LIMIT = 65536  # learned answers per zone; past it, queries keep taking the resolver


def _udp_limit(data: bytes, qend: int, opt: bool) -> int:
    if not opt:
        return UDP_MIN
    size = (data[qend + 3] << 8) | data[qend + 4]
    return UDP_MIN if size < UDP_MIN else (UDP_CAP if size > UDP_CAP else size)


def _learn(zone: Zone, data: bytes, resp: bytes, name_end: int, qend: int, qtype: int, whole: bool) -> None:
    """Record `resp` as the answer to every query equal to `data` but for ID and name case.

    The key is data[2:] lowercased, so only the qname may differ in case: every other
    byte (header, qtype, class, OPT) must be free of ASCII letters, or two different
    queries could fold to one key. Only memoised answers are learned (NXDOMAIN names are
    unbounded), only OPT records without options (cookies differ per client), and at
    most FAST_LIMIT per zone.
    """
    if data[2:12] not in _PLAIN or qtype > 255 or len(zone.fast) >= FAST_LIMIT:
        return  # (qtype > 255: the metrics keep fast-path counts in a 256-slot list)
    if qend != len(data) and (qend + 11 != len(data) or data[-2:] != b"\x00\x00"):
        return  # an OPT with options
    rest = data[2:12] + data[name_end:]
    if rest.lower() != rest or rest.upper() != rest:
        return
    zone.fast[data[2:].lower()] = (resp[2:12], resp[qend:], None if qend == len(data) else qend - len(data), qtype,
                                   whole)


def _truncated(data: bytes, qend: int, rcode: int, opt: bool) -> bytes:
    flags = bytes((0x86 | (data[2] & 1), rcode))  # QR AA TC
    if opt:
        return data[:2] + flags + _COUNTS_Q_OPT + data[12:qend] + OPT_RR
    return data[:2] + flags + _COUNTS_Q + data[12:qend]


def _refused(data: bytes, qend: int, opt: bool) -> bytes:
    flags = bytes((0x80 | (data[2] & 1), REFUSED))
    if opt:
        return data[:2] + flags + _COUNTS_Q_OPT + data[12:qend] + OPT_RR
    return data[:2] + flags + _COUNTS_Q + data[12:qend]


def _question_end(data: bytes) -> int:
    """Offset just past the first question, or 0 when it cannot be located plainly."""
    try:
        i = 12
        n = data[i]
        while n:
            if n > 63:
                return 0
            i += n + 1
            n = data[i]
        return i + 5 if i + 5 <= len(data) else 0
    except IndexError:
        return 0


def _unusual(zone: Zone | None, data: bytes, tcp: bool, forward: bool, stats: Stats | None
             ) -> bytes | _Forward | None:
    """The cold path: anything that is not one plain IN question with at most one OPT."""
    if len(data) < 12:
        return None  # no header to answer to
    if data[2] & 0x80:
        return None  # a response; answering it could start a loop
    opcode = (data[2] >> 3) & 0x0F
    qdcount = (data[4] << 8) | data[5]
    qend = _question_end(data) if qdcount == 1 else 0
    qtype = (data[qend - 4] << 8) | data[qend - 3] if qend else 0
    if opcode != 0:
        _count(stats, qtype, NOTIMP)
        return error_reply(data, NOTIMP)
    if qdcount != 1 or not qend:
        _count(stats, qtype, FORMERR)
        return error_reply(data, FORMERR)
    try:
        record = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, UnicodeError, struct.error):
        _count(stats, qtype, FORMERR)
        return error_reply(data, FORMERR)
    opts = [rr for rr in record.ar if rr.rtype == 41]
    if len(opts) > 1:
        _count(stats, qtype, FORMERR)
        return error_reply(data, FORMERR)
    opt = bool(opts)
    if opt and (opts[0].ttl >> 16) & 0xFF != 0:  # EDNS version other than 0
        _count(stats, qtype, BADVERS)
        flags = bytes((0x80 | (data[2] & 1), 0))
        return data[:2] + flags + _COUNTS_Q_OPT + data[12:qend] + _OPT_BADVERS
    if zone is None:
        _count(stats, qtype, SERVFAIL)
        resp = error_reply(data, SERVFAIL, question_end=qend)
        if resp is not None and opt:
            resp = resp[:10] + b"\x00\x01" + resp[12:] + OPT_RR
        return resp
    qclass = (data[qend - 2] << 8) | data[qend - 1]
    if qclass not in (1, 255):
        _count(stats, qtype, REFUSED)
        return _refused(data, qend, opt)
    # Re-enter the hot path with the canonical form: only the question (and our OPT view).
    canon = data[:2] + bytes((data[2] & 0x01, 0)) + b"\x00\x01\x00\x00\x00\x00" \
        + (b"\x00\x01" if opt else b"\x00\x00") + data[12:qend - 2] + _IN
    if opt:
        udp = opts[0].rclass
        canon += b"\x00\x00\x29" + struct.pack("!H", max(0, min(udp, 65535))) + b"\x00\x00\x00\x00\x00\x00"
    answer = resolve(zone, canon, tcp=tcp, forward=forward, stats=stats)
    if isinstance(answer, bytes):
        return answer[:12] + data[12:qend] + answer[qend:]  # the request's own question (class)
    return answer
