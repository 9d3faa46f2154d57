"""JSON on the wire to API servers: orjson where it is installed, else the standard library.

The controller's cold start encodes one body per write and decodes one watch event per
write (bench/controller_scale.py): with the standard library that was ~55 µs of a ~420 µs
write; orjson does both in ~14 µs. Both give the same values for what an API server sends
(objects, strings, 64-bit integers, booleans, null). orjson is stricter on what Kubernetes
never sends (NaN, integers beyond 64 bits: a ValueError, reported as an undecodable answer)
and refuses to encode what the standard library escapes (a lone surrogate in a string): that
body is then encoded by the standard library, so every body we could send before still goes.
"""
from __future__ import annotations

import json
from typing import Any, Callable

_STDLIB_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
# (our bodies are trees we built, no cycles: the cycle check was a quarter of the encoding)

try:
    import orjson
except ImportError:  # not installed (no wheel for this platform): the standard library
    orjson = None


def _stdlib_dumps(obj: Any) -> bytes:
    return _STDLIB_ENCODE(obj).encode()


if orjson is not None:
    _orjson_dumps = orjson.dumps

    def _orjson_or_stdlib(obj: Any) -> bytes:
        try:
            return _orjson_dumps(obj)
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a non-str key, a huge int
            return _stdlib_dumps(obj)

    dumps: Callable[[Any], bytes] = _orjson_or_stdlib
    loads: Callable[[bytes | str], Any] = orjson.loads  # its JSONDecodeError is json's (a ValueError)
    IMPLEMENTATION = "orjson"
else:
    dumps = _stdlib_dumps
    loads = json.loads
    IMPLEMENTATION = "json"

__all__ = ["IMPLEMENTATION", "dumps", "loads"]
