"""Differential tests of the two HTTP/2 layers (gateway/h2codec): the same client bytes fed to
libnghttp2's connection and to the h2 library's give the same events, the same responses
(as an h2 client decodes them) and the same refusals."""
from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from gateway import h2codec

pytestmark = pytest.mark.skipif(h2codec.NgH2Connection is None,
                                reason="the libnghttp2 HTTP/2 layer is not built (apt-get install libnghttp2-dev)")

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a?b=1"), (b":authority", b"x.example"),
       (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"accept", b"*/*")]
POST = [(b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/up"), (b":authority", b"x.example"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers")]


def client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c


def joined(headers: list) -> list[tuple[bytes, bytes]]:
    """Cookie crumbs joined as DownstreamH2 joins them (the h2 library joins them itself)."""
    fields = [(bytes(n), bytes(v)) for n, v in headers]
    cookies = [v for n, v in fields if n == b"cookie"]
    rest = [f for f in fields if f[0] != b"cookie"]
    return rest + ([(b"cookie", b"; ".join(cookies))] if cookies else [])


def normal(events: list) -> list[tuple]:
    """Events as comparable tuples (settings and acknowledgements left out: their contents differ)."""
    out = []
    for e in events:
        if isinstance(e, h2.events.RequestReceived):
            out.append(("request", e.stream_id, joined(e.headers), e.stream_ended is not None))
        elif isinstance(e, h2.events.TrailersReceived):
            out.append(("trailers", e.stream_id, [tuple(map(bytes, h)) for h in e.headers]))
        elif isinstance(e, h2.events.DataReceived):
            out.append(("data", e.stream_id, e.data, e.flow_controlled_length))
        elif isinstance(e, h2.events.StreamEnded):
            out.append(("end", e.stream_id))
        elif isinstance(e, h2.events.StreamReset):
            out.append(("reset", e.stream_id, int(e.error_code)))
        elif isinstance(e, h2.events.WindowUpdated):
            out.append(("window", e.stream_id, e.delta))
        elif isinstance(e, h2.events.PingReceived):
            out.append(("ping", e.ping_data))
    return out


def both(wire: list[bytes]) -> tuple[list, list, list, list]:
    """Feed each piece to both servers: (their normalised events, the server objects)."""
    ng = h2codec.server_connection(128, 73728, pure=False)
    py = h2codec.server_connection(128, 73728, pure=True)
    ng.initiate_connection()
    py.initiate_connection()
    ev_ng, ev_py = [], []
    for piece in wire:
        ev_ng += ng.receive_data(piece)
        ev_py += py.receive_data(piece)
    return normal(ev_ng), normal(ev_py), ng, py


def test_requests_bodies_trailers_resets_and_pings_give_the_same_events():
    c = client()
    wire = [c.data_to_send()]
    c.send_headers(1, GET, end_stream=True)
    c.send_headers(3, POST)
    c.send_data(3, b"\x00\x00\x00\x00\x05hello")
    wire.append(c.data_to_send())
    c.send_data(3, b"x" * 10000)  # more than one frame
    c.send_data(3, b"x" * 10000)
    c.send_headers(3, [(b"x-trailer", b"1")], end_stream=True)
    c.send_headers(5, GET)
    c.reset_stream(5, 8)
    c.increment_flow_control_window(1000)
    c.ping(b"12345678")
    wire.append(c.data_to_send())
    a, b, _, _ = both(wire)
    assert a == b
    assert ("request", 1, joined(GET), True) in a and ("reset", 5, 8) in a and ("ping", b"12345678") in a
    assert sum(e[3] for e in a if e[0] == "data") == 20010


def test_responses_decode_the_same():
    c = client()
    c.send_headers(1, GET, end_stream=True)
    c.send_headers(3, POST, end_stream=True)
    _, _, ng, py = both([c.data_to_send()])
    decoded = []
    for server in (ng, py):
        server.send_headers(1, [(b":status", b"200"), (b"content-length", b"5")])
        server.send_data(1, b"hello")
        server.end_stream(1)
        server.send_headers(3, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        server.send_data(3, b"\x00\x00\x00\x00\x01z")
        server.send_headers(3, [(b"grpc-status", b"0"), (b"grpc-message", b"ok")], end_stream=True)  # trailers
        peer = client()
        peer.send_headers(1, GET, end_stream=True)
        peer.send_headers(3, POST, end_stream=True)
        peer.data_to_send()
        evs = peer.receive_data(server.data_to_send())
        decoded.append([(type(e).__name__, getattr(e, "stream_id", None), getattr(e, "headers", None),
                         getattr(e, "data", None)) for e in evs
                        if not isinstance(e, (h2.events.RemoteSettingsChanged, h2.events.SettingsAcknowledged))
                        and getattr(e, "data", None) != b""])  # (an empty DATA carrying only END_STREAM)
    # per stream the same frames in the same order (how streams interleave is each layer's choice)
    assert sorted(decoded[0], key=lambda d: d[1]) == sorted(decoded[1], key=lambda d: d[1])
    names = [d[0] for d in decoded[0]]
    assert names.count("ResponseReceived") == 2 and "TrailersReceived" in names and names.count("StreamEnded") == 2


def test_flow_control_windows_agree():
    c = client()
    c.send_headers(1, GET, end_stream=True)
    _, _, ng, py = both([c.data_to_send()])
    for server in (ng, py):
        server.send_headers(1, [(b":status", b"200")])
    assert ng.local_flow_control_window(1) == py.local_flow_control_window(1) == 65535
    assert ng.max_outbound_frame_size == py.max_outbound_frame_size == 16384


@pytest.mark.parametrize("bad", [
    [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"x")],  # no :scheme
    GET + [(b"connection", b"close")],  # connection-specific
    GET + [(b"Upper", b"1")],  # uppercase name
    GET + [(b"x-a", b"1\r\nx-b: 2")],  # CR LF in a value
])
def test_malformed_requests_are_refused_by_both(bad):
    """h2 closes the connection, nghttp2 resets the stream: neither hands the request on."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                            validate_outbound_headers=False,
                                                            normalize_outbound_headers=False))
    c.initiate_connection()
    c.send_headers(1, bad, end_stream=True)
    wire = c.data_to_send()
    for pure in (False, True):
        server = h2codec.server_connection(128, 73728, pure=pure)
        server.initiate_connection()
        try:
            events = server.receive_data(wire)
        except h2.exceptions.ProtocolError:
            continue
        assert not any(isinstance(e, h2.events.RequestReceived) for e in events)
        assert b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" in server.data_to_send()  # RST_STREAM on stream 1


H1_HEADS = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nX-Bench: backend\r\n"
    b"x-fleetgate-cluster: zone-a\r\n\r\nhello\n",
    b"HTTP/1.1 404 Not Found\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nX-Kind:none\r\nX-Empty:\r\nX-Spaces: \t a b \t\r\n\r\n",
    # lines an HTTP/1.1 framing choice added, and hop-by-hop ones: never in an HTTP/2 response
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nKeep-Alive: 5\r\n"
    b"Proxy-Connection: x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nconnection-id: 7\r\n\r\n",
]


@pytest.mark.parametrize("head", H1_HEADS)
def test_an_http1_response_head_becomes_the_same_headers_on_both(head: bytes):
    """send_h1_head (C on libnghttp2, Python on the h2 library): names lowercased, OWS trimmed,
    connection-specific fields dropped, repeated fields kept in order."""
    decoded = []
    for pure in (False, True):
        server = h2codec.server_connection(100, 65536, pure=pure)
        c = client()
        server.initiate_connection()
        c.send_headers(1, GET, end_stream=True)
        server.receive_data(c.data_to_send())
        server.send_h1_head(1, head, head.find(b"\r\n\r\n"), True)
        events = c.receive_data(server.data_to_send())
        decoded.append([e.headers for e in events if isinstance(e, h2.events.ResponseReceived)])
    assert decoded[0] == decoded[1]
    fields = decoded[0][0]
    assert fields[0] == (b":status", head[9:12])
    names = [n for n, _ in fields]
    assert all(n == n.lower() for n in names)
    assert not {b"connection", b"transfer-encoding", b"upgrade", b"keep-alive", b"proxy-connection"} & set(names)
    if b"X-Spaces" in head:
        assert (b"x-spaces", b"a b") in fields and (b"x-empty", b"") in fields
    if b"Set-Cookie" in head:
        assert [v for n, v in fields if n == b"set-cookie"] == [b"a=1", b"b=2"]
        assert (b"connection-id", b"7") in fields


def client_events(pure: bool) -> tuple[list, bytes]:
    """A gRPC-like exchange from the client side (h2codec.client_connection) against an h2
    library server: a request with a body past the first write, an informational and a final
    response, DATA, trailers, a second stream reset by the server, a PING and its ACK.
    (The client's normalised events, the bytes the server received after the preface.)"""
    c = h2codec.client_connection(1 << 20, 16 << 20, 256 * 1024, pure=pure)
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    srv.initiate_connection()
    c.initiate_connection()
    srv.receive_data(c.data_to_send())
    events = c.receive_data(srv.data_to_send())
    srv.receive_data(c.data_to_send())
    assert c.can_open_stream()
    one = c.open_stream(POST, False)
    c.send_data(one, b"\x00\x00\x00\x00\x03abc")
    c.end_stream(one)
    two = c.open_stream(GET, True)
    c.ping(b"12345678")
    got = []
    for ev in srv.receive_data(c.data_to_send()):
        if isinstance(ev, h2.events.DataReceived):
            got.append(ev.data)
    srv.send_headers(one, [(b":status", b"100")])
    srv.send_headers(one, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    srv.send_data(one, b"\x00\x00\x00\x00\x02ok")
    srv.send_headers(one, [(b"grpc-status", b"0"), (b"grpc-message", b"")], end_stream=True)
    srv.reset_stream(two, 7)  # REFUSED_STREAM
    events += c.receive_data(srv.data_to_send())
    out = normal(events)
    for e in events:
        if isinstance(e, h2.events.InformationalResponseReceived):
            out.append(("informational", e.stream_id, [tuple(map(bytes, h)) for h in e.headers]))
        elif isinstance(e, h2.events.ResponseReceived):
            out.append(("response", e.stream_id, [tuple(map(bytes, h)) for h in e.headers], e.stream_ended is not None))
        elif isinstance(e, h2.events.PingAckReceived):
            out.append(("ping-ack", e.ping_data))
    assert c.open_outbound_streams == 0 and c.can_open_stream()  # both streams closed: their slots are free
    return out, b"".join(got)


def test_the_client_layers_give_the_same_events():
    """gRPC upstream connections run on either layer (h2codec.client_connection): the same
    server bytes give the same events, and the request body arrives whole from both."""
    ng, ng_body = client_events(pure=False)
    py, py_body = client_events(pure=True)
    assert ng == py
    assert ng_body == py_body == b"\x00\x00\x00\x00\x03abc"
    kinds = [e[0] for e in ng]
    assert {"informational", "response", "data", "trailers", "end", "reset", "ping-ack"} <= set(kinds)
