"""Build the optional compiled HTTP/1 codec (gateway.codec._http1) beside the metadata in
pyproject.toml. Optional as in aiohttp and yarl: without Cython or a C compiler the build
warns and installs the pure-Python twin (gateway/codec/_http1_py.py) alone."""
from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PYX = os.path.join("gateway", "codec", "_http1.pyx")


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
        return cythonize([Extension("gateway.codec._http1", [PYX], extra_compile_args=["-O2"])],
                         compiler_directives={"language_level": "3"}, quiet=True)
    except Exception as err:  # noqa: BLE001 - a Cython compile error must not stop the install
        sys.stderr.write("WARNING: cythonize failed (%s); building without the compiled codec\n" % (err,))
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
