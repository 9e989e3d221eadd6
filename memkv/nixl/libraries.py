"""Which of a NIXL wheel's bundled UCX modules would load the host's copy of a bundled library.

A NIXL wheel (nixl-cu12) bundles UCX and the RDMA userspace it links (libibverbs, libmlx5,
libnl-3, libnl-route-3) under renamed sonames in `<package>.libs/`. One UCX module, the EFA
transport (`ucx/libuct_ib_efa.so`), needs `libefa.so.1`, which the wheel does not bundle. On a
host with rdma-core installed, UCX's module loader finds the host's libefa, which pulls the
host's libibverbs, libnl-3 and libnl-route-3 in beside the wheel's copies. UCX loads its modules
with RTLD_GLOBAL, so the host libnl-route-3's constructors bind `rtnl_tc_register` to the
wheel's copy (the first in the global scope) and register their static tables into the wheel's
list; at exit `_dl_fini` runs both copies' destructors against that one list and the process
dies with SIGSEGV after doing its work.

A module that pulls such a second copy is only useful when a device it drives is present.
`plan()` finds those modules by reading ELF dependencies (nothing is loaded) and excludes the
ones whose devices are absent from `UCX_MODULES`; a module whose device is present stays
enabled (RDMA is never disabled where it exists) and `memkv doctor` reports that host as one
that needs a NIXL/UCX build linked against the host's rdma-core.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

WHEEL_MODULES = ("nixl_cu12", "nixl_cu13")
# UCX module files are lib<framework>_<module>.so; the longest framework prefix wins.
_FRAMEWORKS = ("ucx_perftest_", "uct_ib_", "uct_", "ucm_", "ucs_")
_AUDITWHEEL_HASH = re.compile(r"^(lib[A-Za-z0-9_+.-]*?)-[0-9a-f]{8}\.so")
_PLAIN = re.compile(r"^(lib[A-Za-z0-9_+.-]*?)\.so")
HOST_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
              "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")
_MAX_DEPTH = 4


def base_name(filename: str) -> str:
    """libibverbs-1de1263b.so.1.14.48.0 and libibverbs.so.1 are both 'libibverbs'."""
    match = _AUDITWHEEL_HASH.match(filename) or _PLAIN.match(filename)
    return match.group(1) if match else filename


def needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF shared object ([] if it is not one)."""
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            section = elf.get_section_by_name(".dynamic")
            if not isinstance(section, DynamicSection):
                return []
            tags = section.iter_tags()
            return [str(tag.needed) for tag in tags if tag.entry.d_tag == "DT_NEEDED"]  # type: ignore[attr-defined]
    except (OSError, ELFError):
        return []


def wheel_libs() -> Path | None:
    """The `<package>.libs` folder of the installed NIXL wheel, found without importing it."""
    for module in WHEEL_MODULES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            libs = Path(location).parent / f"{module}.libs"
            if (libs / "ucx").is_dir():
                return libs
    return None


def host_library(soname: str, dirs: Iterable[str] = HOST_DIRS) -> Path | None:
    for directory in dirs:
        candidate = Path(directory) / soname
        if candidate.exists():
            return candidate
    return None


def _host_closure(soname: str, dirs: tuple[str, ...]) -> set[str]:
    """Base names of a host library and everything it needs (sonames found on the host)."""
    seen: set[str] = set()
    frontier = [(soname, 0)]
    names: set[str] = set()
    while frontier:
        name, depth = frontier.pop()
        if name in seen or depth > _MAX_DEPTH:
            continue
        seen.add(name)
        path = host_library(name, dirs)
        if path is None:
            continue
        names.add(base_name(name))
        frontier.extend((child, depth + 1) for child in needed(path))
    return names


@dataclasses.dataclass(frozen=True)
class Conflict:
    """A bundled UCX module that would load host copies of libraries the wheel bundles."""

    module: str            # the UCX module name (what UCX_MODULES names), e.g. "efa"
    file: str              # e.g. "libuct_ib_efa.so.0.0.0"
    via: tuple[str, ...]   # the unbundled sonames it needs, e.g. ("libefa.so.1",)
    duplicates: tuple[str, ...]  # bundled libraries that would load twice, e.g. ("libibverbs", ...)
    devices: tuple[str, ...]     # RDMA devices present that this module drives
    parent: str | None = None    # the module that loads it ("ib" for the uct_ib modules)

    def loads_under(self, setting: str | None) -> bool:
        """Whether UCX loads this module with UCX_MODULES set to `setting` (None: not set)."""
        if setting is None:
            return True
        return allowed_by(setting, self.module) and (self.parent is None or allowed_by(setting, self.parent))


def module_name(filename: str) -> str | None:
    stem = filename.split(".so")[0]
    if not stem.startswith("lib"):
        return None
    stem = stem[3:]
    for prefix in _FRAMEWORKS:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return stem[len(prefix):]
    return None


def rdma_devices(sysfs_root: str = "/sys") -> dict[str, str]:
    """{device: kernel driver} of /sys/class/infiniband (empty when the host has no RDMA device)."""
    root = Path(sysfs_root) / "class" / "infiniband"
    devices: dict[str, str] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return devices
    for entry in entries:
        driver = entry / "device" / "driver"
        try:
            devices[entry.name] = os.path.basename(os.readlink(driver))
        except OSError:
            devices[entry.name] = ""
    return devices


def conflicts(libs: Path, sysfs_root: str = "/sys", host_dirs: tuple[str, ...] = HOST_DIRS) -> list[Conflict]:
    """Bundled UCX modules whose unbundled dependencies pull host copies of bundled libraries."""
    bundled_files = {p.name for p in libs.iterdir()} | {p.name for p in (libs / "ucx").iterdir()}
    bundled_bases = {base_name(name) for name in bundled_files}
    devices = rdma_devices(sysfs_root)
    found: list[Conflict] = []
    for path in sorted((libs / "ucx").glob("*.so*")):
        name = module_name(path.name)
        if name is None:
            continue
        external = [s for s in needed(path) if s not in bundled_files and base_name(s) not in _SYSTEM_BASES]
        duplicates: set[str] = set()
        via: list[str] = []
        for soname in external:
            clash = _host_closure(soname, host_dirs) & bundled_bases
            if clash:
                via.append(soname)
                duplicates |= clash
        if duplicates:
            served = tuple(dev for dev, driver in devices.items() if driver.startswith(name))
            parent = "ib" if path.name.startswith("libuct_ib_") else None
            found.append(Conflict(name, path.name, tuple(via), tuple(sorted(duplicates)), served, parent))
    return found


# The C runtime and friends: always the host's, never bundled by a manylinux wheel.
_SYSTEM_BASES = {"libc", "libm", "libdl", "libpthread", "librt", "libstdc++", "libgcc_s", "ld-linux-x86-64",
                 "ld-linux-aarch64"}


def allowed_by(setting: str, module: str) -> bool:
    """Whether a UCX_MODULES value ("^a,b" excludes; "a,b" or "all" allows) lets a module load."""
    names = [n.strip() for n in setting.lstrip("^").split(",") if n.strip()]
    if setting.startswith("^"):
        return module not in names
    return "all" in names or module in names


_PROVIDER_ABI = re.compile(rb"lib%s-(rdmav\d+)\.so")
_SONAME_VERSION = re.compile(r"\.so\.1\.\d+\.(\d+)\.\d+$")


def bundled_rdma_core(libs: Path) -> tuple[str | None, str | None]:
    """(rdma-core release, provider ABI) of the wheel's bundled libibverbs."""
    for path in libs.glob("libibverbs-*.so*"):
        release = _SONAME_VERSION.search(path.name)
        abi = _PROVIDER_ABI.search(path.read_bytes())
        return (release.group(1) if release else None), (abi.group(1).decode() if abi else None)
    return None, None


def host_rdma_core(host_dirs: tuple[str, ...] = HOST_DIRS) -> tuple[str | None, set[str]]:
    """(rdma-core release of the host's libibverbs, the ABIs of the host's verbs providers)."""
    library = host_library("libibverbs.so.1", host_dirs)
    if library is None:
        return None, set()
    release = _SONAME_VERSION.search(library.resolve().name)
    abis: set[str] = set()
    for directory in host_dirs:
        for provider in Path(directory, "libibverbs").glob("lib*-rdmav*.so"):
            abis.add(provider.name.rsplit("-", 1)[1].removesuffix(".so"))
    return (release.group(1) if release else None), abis


def bundled_providers(libs: Path) -> set[str]:
    """Verbs providers the wheel bundles (libmlx5-<hash>.so -> 'mlx5')."""
    known = {"mlx4", "mlx5", "efa", "bnxt_re", "irdma", "rxe", "siw", "hns", "qedr", "mana", "erdma"}
    return {base_name(p.name)[3:] for p in libs.iterdir() if base_name(p.name)[3:] in known}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What memkv sets before NIXL loads UCX, and why."""

    exclude: tuple[str, ...]     # modules memkv keeps UCX from loading (their devices are absent)
    needed: tuple[Conflict, ...]  # conflicting modules that stay loaded because their devices exist
    user_setting: str | None      # UCX_MODULES as the user set it (memkv then changes nothing)

    def ucx_modules(self) -> str | None:
        """The UCX_MODULES value to set, or None to leave the environment alone."""
        if self.user_setting is not None or not self.exclude:
            return None
        return "^" + ",".join(self.exclude)


def plan(environ: dict[str, str] | os._Environ[str] | None = None, sysfs_root: str = "/sys",
         libs: Path | None = None, host_dirs: tuple[str, ...] = HOST_DIRS) -> Plan:
    env = os.environ if environ is None else environ
    libs = libs if libs is not None else wheel_libs()
    found = conflicts(libs, sysfs_root, host_dirs) if libs is not None else []
    exclude = tuple(c.module for c in found if not c.devices)
    needed_here = tuple(c for c in found if c.devices)
    return Plan(exclude, needed_here, env.get("UCX_MODULES"))


def prepare_environment(environ: os._Environ[str] | dict[str, str] | None = None,
                        sysfs_root: str = "/sys") -> Plan:
    """Set UCX_MODULES (before UCX starts) so no module loads a second copy of a bundled library.

    Must run before the NIXL wheel loads UCX: UCX reads UCX_MODULES once, when libucs loads.
    """
    env = os.environ if environ is None else environ
    decided = plan(env, sysfs_root)
    value = decided.ucx_modules()
    if value is not None:
        env["UCX_MODULES"] = value
    return decided


__all__ = ["HOST_DIRS", "Conflict", "Plan", "allowed_by", "base_name", "bundled_providers", "bundled_rdma_core",
           "conflicts", "host_library", "host_rdma_core", "module_name", "needed", "plan", "prepare_environment",
           "rdma_devices", "wheel_libs"]
