"""The HTTP/1 codec: bytes <-> validated heads, compiled where built, else its Python twin.

The one place that chooses (aiohttp's and yarl's shape): the typed Cython modules
`_http1` and `_chunked` when both are built and FLEETGATE_PURE_PYTHON is not "1", else
their twins `_http1_py` and `_chunked_py`.
Both give the same results for the same bytes (tests/gateway/codec holds them to one
corpus and to random heads). `IMPLEMENTATION` says which is active ("compiled" | "pure")
for `fleetgate --version` and the build-info metric.

The interface, for the protocols (sans-IO: feed bytes, get heads and bytes to write):

- head_end(buf, start, limit, line_limit=0, resume=0) -> int: the offset just past the
  head starting at `start`, or -1 (keep reading into the same buffer); HeadError for bare
  CR/LF or a head over its limits.
- parse_request(buf, start, end, max_line, max_header_bytes) -> RequestHead
- upstream_head(head, target, host, peer, scheme, request_id, extra=b"") -> bytes
- parse_response(buf, start, end, head_request) -> ResponseHead (errors are 502)
- ChunkedDecoder(*, error_status=400, max_line=4096, max_trailers=16384): feed(data) ->
  payload pieces, `.done`, `.leftover`.

The four head functions take their arguments by position or by name; pass them by
position on the hot path (the compiled module parses keywords only when some are given).
RequestHead and ResponseHead are NamedTuples (immutable), the same classes for both.

A caller checks for the HTTP/2 preface (b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n") before
parse_request, which refuses it (400: `*` is for OPTIONS only).
"""
from __future__ import annotations

import os

from .types import HeadError, RequestHead, ResponseHead

__all__ = ["IMPLEMENTATION", "HeadError", "RequestHead", "ResponseHead", "head_end", "parse_request",
           "upstream_head", "parse_response", "ChunkedDecoder"]

IMPLEMENTATION: str
if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
    from ._chunked_py import ChunkedDecoder
    from ._http1_py import head_end, parse_request, parse_response, upstream_head
    IMPLEMENTATION = "pure"
else:
    try:
        from ._chunked import ChunkedDecoder  # type: ignore[no-redef, import-not-found]
        from ._http1 import (head_end, parse_request, parse_response,  # type: ignore[no-redef, import-not-found]
                             upstream_head)
        IMPLEMENTATION = "compiled"
    except ImportError:  # not built (no compiler at install time): the twins
        from ._chunked_py import ChunkedDecoder  # type: ignore[assignment]
        from ._http1_py import (head_end, parse_request, parse_response,  # type: ignore[assignment]
                                upstream_head)
        IMPLEMENTATION = "pure"
