"""The HTTP/2 framing layer of the downstream: libnghttp2 (compiled, `_nghttp2.pyx`) when it
was built, the pure-Python `h2` library otherwise or under FLEETGATE_PURE_PYTHON=1. Both are
used through the same interface (h2.connection.H2Connection's, the subset DownstreamH2 calls,
plus send_h1_head: an HTTP/1.1 response head as HEADERS) and give h2.events objects, so
gateway/protocol/h2.py does not know which one it runs on.
IMPLEMENTATION ("compiled" | "pure") is what `fleetgate --version` reports as `http2`."""
from __future__ import annotations

import os
import re
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings

try:
    if os.environ.get("FLEETGATE_PURE_PYTHON") == "1" or os.environ.get("FLEETGATE_HTTP2_PURE") == "1":
        raise ImportError("FLEETGATE_PURE_PYTHON=1 or FLEETGATE_HTTP2_PURE=1")  # (the latter: HTTP/2 alone, for benchmarks)
    from ._nghttp2 import NgH2Connection
except ImportError:  # not built (no compiler, no libnghttp2 headers) or not wanted
    NgH2Connection = None  # type: ignore[assignment,misc]

IMPLEMENTATION = "compiled" if NgH2Connection is not None else "pure"


# a response head's header lines (the first is the status line): name, value without OWS
_FIELD = re.compile(rb"\r\n([^:\r\n]+):[ \t]*([^\r\n]*)")
# hop-by-hop in HTTP/1.1, forbidden in HTTP/2 responses (RFC 9113 8.2.2)
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"))


def h1_head_fields(data: bytes, end: int) -> list[tuple[bytes, bytes]]:
    """The HTTP/1.1 response head data[:end] (status line, `name: value` lines, CRLF between,
    no blank line) as HTTP/2 fields: :status, names lowercased, values without OWS,
    connection-specific lines dropped. (The compiled layer does this in C: send_h1_head.)"""
    head = data[:end]
    if len(head) < 12 or head[:5] != b"HTTP/":
        raise h2.exceptions.ProtocolError("not an HTTP/1.1 response head")
    fields = [(b":status", head[9:12])]
    for name, value in _FIELD.findall(head):
        name = name.lower()
        if name not in CONNECTION_SPECIFIC:
            fields.append((name, value.rstrip(b" \t")))
    return fields


class H2LibraryServer(h2.connection.H2Connection):
    """The h2 library's connection with the one method the compiled layer adds."""

    def send_h1_head(self, stream_id: int, data: bytes, end: int, end_stream: bool = False) -> None:
        self.send_headers(stream_id, h1_head_fields(data, end), end_stream=end_stream)


def h2_library_server(max_concurrent_streams: int, max_header_list_size: int) -> Any:
    """The pure-Python server connection. Inbound headers are validated (the client is not
    trusted); outbound ones are ours, lowercased from a head the codec already validated:
    checking them again cost ~15 % of an HTTP/2 request (py-spy), so it is off."""
    conn = H2LibraryServer(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=True,
        validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    })
    # (settings given as initial values are not "acknowledged": the decoder is told directly)
    conn.decoder.max_header_list_size = max_header_list_size
    return conn


class H2LibraryClient(h2.connection.H2Connection):
    """The h2 library's client connection with the client interface of the compiled layer
    (gateway/upstream/h2_connection.py uses it for gRPC upstreams)."""

    def __init__(self, stream_window: int, connection_window: int, max_header_list_size: int) -> None:
        super().__init__(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=True,
            validate_outbound_headers=False, normalize_outbound_headers=False))
        self.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
        })
        self._connection_window = connection_window

    def initiate_connection(self) -> None:
        super().initiate_connection()
        if self._connection_window > 65535:
            self.increment_flow_control_window(self._connection_window - 65535)

    def can_open_stream(self) -> bool:
        return self.open_outbound_streams < self.remote_settings.max_concurrent_streams  # type: ignore[no-any-return]

    def open_stream(self, headers: list[tuple[bytes, bytes]], end_stream: bool = False) -> int:
        sid = self.get_next_available_stream_id()
        self.send_headers(sid, headers, end_stream=end_stream)
        return sid  # type: ignore[no-any-return]


def client_connection(stream_window: int, connection_window: int, max_header_list_size: int, *,
                      pure: bool | None = None) -> Any:
    """A client-side HTTP/2 connection (gRPC upstreams) on the active layer: initiate_connection,
    can_open_stream, open_stream(headers, end_stream) -> stream id, then the h2 library's
    send_data / end_stream / acknowledge_received_data / reset_stream / ping / receive_data."""
    if pure is None:
        pure = ACTIVE == "pure"
    if pure or NgH2Connection is None:
        return H2LibraryClient(stream_window, connection_window, max_header_list_size)
    return NgH2Connection(0, max_header_list_size, client=True, initial_window=stream_window,
                          connection_window=connection_window)


def server_connection(max_concurrent_streams: int, max_header_list_size: int, *, pure: bool | None = None) -> Any:
    """A server-side HTTP/2 connection on the active layer (`pure` forces one, for tests)."""
    if pure is None:
        pure = ACTIVE == "pure"
    if pure or NgH2Connection is None:
        return h2_library_server(max_concurrent_streams, max_header_list_size)
    return NgH2Connection(max_concurrent_streams, max_header_list_size)


ACTIVE = IMPLEMENTATION  # tests switch it to run both layers


def use(implementation: str) -> None:
    """Run new connections on "compiled" or "pure" (tests; the default is IMPLEMENTATION)."""
    global ACTIVE
    if implementation == "compiled" and NgH2Connection is None:
        raise RuntimeError("the compiled HTTP/2 layer is not built")
    ACTIVE = implementation
