"""Adds the optional io_uring C extension (memkv.store._uring) and the package list; pyproject.toml holds the metadata.

The extension is an accelerator, never a requirement: when the platform is not Linux, the
compiler or kernel headers are missing, or compilation fails, the install goes on without it
and memkv uses its pure-Python I/O path (memkv.store.io_engines.ThreadEngine). Set
MEMKV_NO_NATIVE=1 to skip the build on purpose.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, find_packages, setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """build_ext that warns instead of failing when the C extension cannot be built."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, unsupported platform
            self._skip("the build environment", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(ext.name, exc)

    @staticmethod
    def _skip(what: str, exc: BaseException) -> None:
        sys.stderr.write(
            f"WARNING: memkv: could not build {what} ({exc}); installing without the io_uring "
            "engine, memkv will use its thread-pool I/O path\n"
        )


def _extensions() -> list[Extension]:
    if not sys.platform.startswith("linux") or os.environ.get("MEMKV_NO_NATIVE") == "1":
        return []
    return [
        Extension(
            "memkv.store._uring",
            sources=["native/uring.c"],
            extra_compile_args=["-O2", "-Wall", "-std=gnu11"],
            optional=True,
        )
    ]


setup(
    packages=[*find_packages(include=["memkv", "memkv.*"]), "memkv_spec"],
    package_dir={"memkv_spec": "spec"},
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
