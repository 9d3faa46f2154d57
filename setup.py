"""Build the optional compiled HTTP/1 codec (gateway.codec._http1 and ._chunked) beside the
metadata in pyproject.toml. Optional as in aiohttp and yarl: without Cython or a C compiler
the build warns and installs the pure-Python twins (gateway/codec/_http1_py.py,
_chunked_py.py) alone; gateway/codec/__init__.py uses the compiled pair only when both import."""
from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CODEC = os.path.join("gateway", "codec")
# (module, source); the two codec modules include gateway/codec/_scan.pxi, _http1 also _heads.pxi
MODULES = [("gateway.codec._http1", os.path.join(CODEC, "_http1.pyx")),
           ("gateway.codec._chunked", os.path.join(CODEC, "_chunked.pyx")),
           # the DNS fast path (recvmmsg/sendmmsg: Linux; elsewhere its twin _fastpath_py)
           ("dnsplugin.codec._fastpath", os.path.join("dnsplugin", "codec", "_fastpath.pyx")),
           # the request path's hot core: three pure-Python sources each compiled under
           # another name (Cython's pure Python mode, typed by gateway/exchange/<name>.pxd;
           # _core.pxd cimports the other two), so the twins _*_py stay importable beside
           # them; gateway/exchange/__init__.py chooses (all three compiled, or the twins)
           ("gateway.exchange._exchange", os.path.join("gateway", "exchange", "_exchange_py.py")),
           ("gateway.exchange._route", os.path.join("gateway", "exchange", "_route_py.py")),
           ("gateway.exchange._core", os.path.join("gateway", "exchange", "_core_py.py"))]


class OptionalBuildExt(build_ext):
    """build_ext that turns any compile failure into a warning (the twin still works)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # noqa: BLE001 - no compiler, no headers, a Cython error
            self._warn(err)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:  # noqa: BLE001
            self._warn(err)

    @staticmethod
    def _warn(err: BaseException) -> None:
        sys.stderr.write("WARNING: the compiled HTTP/1 codec was not built (%s); fleetgate will use "
                         "its pure-Python twin\n" % (err,))


def extensions() -> list[Extension]:
    if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write("WARNING: Cython is not installed; building without the compiled codec\n")
        return []
    try:
        depends = [os.path.join(CODEC, "_scan.pxi"), os.path.join(CODEC, "_heads.pxi"),
                   os.path.join("gateway", "exchange", "_core.pxd"), os.path.join("gateway", "exchange", "_exchange.pxd"),
                   os.path.join("gateway", "exchange", "_route.pxd")]
        return cythonize([Extension(name, [src], depends=depends, extra_compile_args=["-O2"])
                          for name, src in MODULES],
                         compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as err:  # noqa: BLE001 - a Cython compile error must not stop the install
        sys.stderr.write("WARNING: cythonize failed (%s); building without the compiled codec\n" % (err,))
        return []


def library_extension(module: str, header: str, libraries: list[str], package: str, fallback: str) -> list[Extension]:
    """`module` (a .pyx and its included .pxi beside it) linked to a C library, when the
    library's `header` is here (apt-get install `package`); without it, or on any build
    error, the pure fallback named by `fallback` serves (the package's __init__ chooses)
    and the install goes on."""
    if os.environ.get("FLEETGATE_PURE_PYTHON") == "1":
        return []
    if not any(os.path.exists(os.path.join(d, header)) for d in ("/usr/include", "/usr/local/include")):
        sys.stderr.write("WARNING: %s not found (apt-get install %s); %s\n" % (header, package, fallback))
        return []
    try:
        from Cython.Build import cythonize
        path = os.path.join(*module.split("."))
        folder = os.path.dirname(path)
        included = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".pxi")]
        return cythonize([Extension(module, [path + ".pyx"], depends=included,
                                    libraries=libraries, extra_compile_args=["-O2"])],
                         compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as err:  # noqa: BLE001 - no Cython, a compile error: the fallback serves
        sys.stderr.write("WARNING: %s was not built (%s); %s\n" % (module, err, fallback))
        return []


# the HTTP/2 layer on libnghttp2 (else the `h2` library); HTTPS over OpenSSL's memory BIOs
# (else the event loop's TLS layer)
NGHTTP2 = library_extension("gateway.h2codec._nghttp2", "nghttp2/nghttp2.h", ["nghttp2"], "libnghttp2-dev",
                            "HTTP/2 stays on the pure-Python h2 library")
TLS = library_extension("gateway.tlscodec._tls", "openssl/ssl.h", ["ssl", "crypto"], "libssl-dev",
                        "HTTPS stays on the event loop's TLS layer")

setup(ext_modules=extensions() + NGHTTP2 + TLS, cmdclass={"build_ext": OptionalBuildExt})

