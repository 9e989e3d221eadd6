"""Host readiness for production: RDMA, NVMe, hugepages, io_uring, O_DIRECT, NIXL and UCX.

Every check reads the host through injectable roots (`sysfs_root`, `procfs_root`) and an
injectable command runner, so tests build fake trees for hardware that is absent. Each check
ends in a status (ok / warn / fail / skip) with a reason a person can act on; the report's
verdict is `ready` (no warnings), `degraded` (warnings) or `not-ready` (any failure).

The JSON form (`Report.as_dict()`) has a stable schema, `memkv.doctor/1`:
    {"schema": "memkv.doctor/1", "verdict": "ready|degraded|not-ready",
     "summary": {"rdma": bool, "nixl_transport": "rdma"|"tcp", "io_engine": "uring"|"threads",
                 "errors": int, "warnings": int, "message": str},
     "host": {"hostname": str, "kernel": str, "python": str, "memkv": str},
     "checks": [{"name": str, "status": "ok|warn|fail|skip", "reason": str, "details": {...}}]}
New keys may be added to `details` and `summary`; existing keys keep their meaning.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..nixl import libraries as nixl_libraries
from ..store.device import MEMORY_FILESYSTEMS, mount_of, open_direct

SCHEMA = "memkv.doctor/1"
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
READY, DEGRADED, NOT_READY = "ready", "degraded", "not-ready"

# runs argv, returns stdout, or None when the tool is missing or fails
Runner = Callable[[Sequence[str]], "str | None"]
UringProbe = Callable[[], "tuple[bool, str]"]


@dataclasses.dataclass
class Check:
    name: str
    status: str
    reason: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Report:
    verdict: str
    summary: dict[str, Any]
    host: dict[str, str]
    checks: list[Check]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "summary": self.summary,
            "host": self.host,
            "checks": [dataclasses.asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)


def default_runner(argv: Sequence[str], timeout: float = 10.0) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0], 0)
    except (ValueError, IndexError):
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


# ---- RDMA ------------------------------------------------------------------------------------

IB_MTUS = (256, 512, 1024, 2048, 4096)
ROCE_OVERHEAD = 96  # GRH/IP + UDP + BTH + extended headers + ICRC, as the kernel's iboe_get_mtu


def _roce_mtu(netdev_mtu: int) -> int | None:
    fitting = [m for m in IB_MTUS if m <= netdev_mtu - ROCE_OVERHEAD]
    return fitting[-1] if fitting else None


def _rdma_ports_sysfs(sysfs: Path) -> list[dict[str, Any]]:
    root = sysfs / "class" / "infiniband"
    devices: list[dict[str, Any]] = []
    for dev in _listdir(root):
        ddir = root / dev
        info: dict[str, Any] = {
            "device": dev,
            "node_type": _read(ddir / "node_type"),
            "fw_ver": _read(ddir / "fw_ver"),
            "board_id": _read(ddir / "board_id"),
            "ports": [],
        }
        for port in _listdir(ddir / "ports"):
            pdir = ddir / "ports" / port
            state = _read(pdir / "state") or "?"
            phys = _read(pdir / "phys_state") or "?"
            link_layer = _read(pdir / "link_layer") or "InfiniBand"
            gids: list[dict[str, Any]] = []
            for idx in _listdir(pdir / "gids"):
                gid = _read(pdir / "gids" / idx)
                if not gid or set(gid.replace(":", "")) == {"0"}:
                    continue
                gids.append(
                    {
                        "index": int(idx) if idx.isdigit() else idx,
                        "gid": gid,
                        "type": _read(pdir / "gid_attrs" / "types" / idx),
                        "netdev": _read(pdir / "gid_attrs" / "ndevs" / idx),
                    }
                )
            gids.sort(key=lambda g: g["index"] if isinstance(g["index"], int) else 0)
            netdevs = sorted({g["netdev"] for g in gids if g["netdev"]})
            netdev_mtu = None
            for nd in netdevs:
                netdev_mtu = _read_int(sysfs / "class" / "net" / nd / "mtu")
                if netdev_mtu:
                    break
            # IB fabrics negotiate the port MTU and sysfs does not expose it: assume the IB maximum
            active_mtu = 4096 if link_layer != "Ethernet" else (_roce_mtu(netdev_mtu) if netdev_mtu else None)
            info["ports"].append(
                {
                    "port": int(port) if port.isdigit() else port,
                    "state": state,
                    "phys_state": phys,
                    "active": "ACTIVE" in state.upper(),
                    "link_up": "LINKUP" in phys.upper(),
                    "link_layer": link_layer,
                    "rate": _read(pdir / "rate"),
                    "gids": gids,
                    "netdevs": netdevs,
                    "netdev_mtu": netdev_mtu,
                    "active_mtu": active_mtu,
                }
            )
        devices.append(info)
    return devices


def _rdma_ports_pyverbs() -> list[dict[str, Any]] | None:
    """Port state and MTU through pyverbs when the host provides it (python3-pyverbs)."""
    try:
        import pyverbs.device as pd  # type: ignore[import-not-found]
    except Exception:
        return None
    try:
        devices: list[dict[str, Any]] = []
        for dev in pd.get_device_list():
            name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            with pd.Context(name=name) as ctx:
                attr = ctx.query_device()
                ports = []
                for port in range(1, int(attr.phys_port_cnt) + 1):
                    pattr = ctx.query_port(port)
                    mtu = 128 << int(pattr.active_mtu)  # IBV_MTU_256 == 1
                    ports.append({"port": port, "state_code": int(pattr.state), "active_mtu": mtu})
            devices.append({"device": name, "fw_ver": str(attr.fw_ver), "ports": ports})
        return devices
    except Exception:
        return None


def check_rdma(sysfs: Path, use_pyverbs: bool) -> Check:
    root = sysfs / "class" / "infiniband"
    tcp_note = "NIXL will use TCP (UCX tcp transport); fine for development, not for production"
    devices = _rdma_ports_sysfs(sysfs)
    source = "sysfs"
    if use_pyverbs:
        pv = _rdma_ports_pyverbs()
        if pv is not None:
            source = "sysfs+pyverbs"
            by_name = {d["device"]: d for d in pv}
            for d in devices:
                extra = by_name.get(d["device"])
                if not extra:
                    continue
                for p in d["ports"]:
                    for q in extra["ports"]:
                        if q["port"] == p["port"]:
                            p["active_mtu"] = q["active_mtu"]
    details: dict[str, Any] = {"source": source, "devices": devices}
    if not devices:
        where = f"{root} is absent" if not root.exists() else f"{root} is empty"
        return Check("rdma", FAIL, f"no RDMA devices ({where}): {tcp_note}", details)
    active = [(d["device"], p) for d in devices for p in d["ports"] if p["active"] and p["link_up"]]
    if not active:
        states = ", ".join(
            f"{d['device']}/{p['port']}: {p['state']}, {p['phys_state']}" for d in devices for p in d["ports"]
        )
        reason = f"RDMA devices present but no port is ACTIVE with LinkUp ({states}): {tcp_note}"
        return Check("rdma", FAIL, reason, details)
    problems = []
    for dev, p in active:
        if p["link_layer"] == "Ethernet":
            if not any((g.get("type") or "").lower().startswith("roce v2") for g in p["gids"]):
                problems.append(
                    f"{dev}/{p['port']} has no RoCE v2 GID (routable RoCE needs one; check the netdev's IP)"
                )
        elif not p["gids"]:
            problems.append(f"{dev}/{p['port']} has no GID")
        if p["active_mtu"] is not None and p["active_mtu"] < 4096:
            hint = f" (netdev MTU {p['netdev_mtu']}; set 9000 for 4096)" if p["netdev_mtu"] else ""
            problems.append(f"{dev}/{p['port']} active MTU {p['active_mtu']} < 4096{hint}")
    names = ", ".join(f"{dev}/{p['port']} {p['link_layer']} {p['rate'] or ''}".strip() for dev, p in active)
    if problems:
        return Check("rdma", WARN, f"active RDMA ports: {names}; but " + "; ".join(problems), details)
    mtus = sorted({p["active_mtu"] for _, p in active if p["active_mtu"]})
    mtu_text = f", MTU {'/'.join(str(m) for m in mtus)}" if mtus else ""
    return Check("rdma", OK, f"active RDMA ports: {names}{mtu_text}; NIXL can use RDMA (UCX rc/ud)", details)


# ---- NVMe ------------------------------------------------------------------------------------

_NS_RE = re.compile(r"^nvme\d+(c\d+)?n\d+$")


def _smart(runner: Runner, ctrl: str) -> dict[str, Any] | None:
    out = runner(["nvme", "smart-log", f"/dev/{ctrl}", "-o", "json"])
    if not out:
        return None
    try:
        data = json.loads(out)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None

    def pick(*keys: str) -> Any:
        for k in keys:
            if k in data:
                return data[k]
        return None

    temp = pick("temperature")
    if isinstance(temp, int) and temp > 200:
        temp = temp - 273  # nvme-cli reports Kelvin in JSON
    return {
        "critical_warning": pick("critical_warning"),
        "percent_used": pick("percent_used", "percentage_used"),
        "media_errors": pick("media_errors"),
        "available_spare": pick("avail_spare", "available_spare"),
        "temperature_c": temp,
    }


def check_nvme(sysfs: Path, runner: Runner) -> Check:
    root = sysfs / "class" / "nvme"
    controllers = []
    problems: list[str] = []
    errors: list[str] = []
    nvme_cli = runner(["nvme", "version"]) is not None
    for ctrl in _listdir(root):
        cdir = root / ctrl
        namespaces = []
        for ns in _listdir(cdir):
            if not _NS_RE.match(ns):
                continue
            sectors = _read_int(cdir / ns / "size")
            if sectors is None:
                sectors = _read_int(sysfs / "block" / ns / "size")
            lbs = _read_int(cdir / ns / "queue" / "logical_block_size") or _read_int(
                sysfs / "block" / ns / "queue" / "logical_block_size"
            )
            size = (sectors or 0) * 512  # sysfs `size` is always in 512-byte sectors
            namespaces.append({"name": ns, "bytes": size, "size": _human_bytes(size), "logical_block_size": lbs})
        info: dict[str, Any] = {
            "controller": ctrl,
            "model": _read(cdir / "model"),
            "serial": _read(cdir / "serial"),
            "firmware": _read(cdir / "firmware_rev"),
            "transport": _read(cdir / "transport"),
            "state": _read(cdir / "state"),
            "namespaces": namespaces,
        }
        if nvme_cli:
            info["health"] = _smart(runner, ctrl)
        controllers.append(info)
        if info["state"] not in (None, "live"):
            errors.append(f"{ctrl} state is {info['state']}")
        if not namespaces:
            problems.append(f"{ctrl} has no namespace")
        health = info.get("health")
        if health:
            if health.get("critical_warning"):
                errors.append(f"{ctrl} reports critical_warning={health['critical_warning']}")
            used = health.get("percent_used")
            if isinstance(used, int) and used >= 90:
                problems.append(f"{ctrl} wear {used}% used")
            if health.get("media_errors"):
                problems.append(f"{ctrl} media_errors={health['media_errors']}")
    details: dict[str, Any] = {"controllers": controllers, "nvme_cli": nvme_cli}
    if not controllers:
        return Check(
            "nvme",
            WARN,
            f"no NVMe controllers ({root} absent or empty): the store will run on a file on another filesystem",
            details,
        )
    summary = "; ".join(
        f"{c['controller']} {c['model'] or '?'} fw {c['firmware'] or '?'}"
        + "".join(f", {n['name']} {n['size']}" for n in c["namespaces"])
        for c in controllers
    )
    if not nvme_cli:
        problems.append("nvme-cli not installed, health not read (apt-get install nvme-cli)")
    if errors:
        return Check("nvme", FAIL, f"{summary}; " + "; ".join(errors + problems), details)
    if problems:
        return Check("nvme", WARN, f"{summary}; " + "; ".join(problems), details)
    return Check("nvme", OK, summary, details)


# ---- memory ----------------------------------------------------------------------------------


def _meminfo(procfs: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(procfs / "meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def check_hugepages(sysfs: Path, procfs: Path) -> Check:
    pools = {}
    for name in _listdir(sysfs / "kernel" / "mm" / "hugepages"):
        m = re.match(r"hugepages-(\d+)kB", name)
        if m:
            d = sysfs / "kernel" / "mm" / "hugepages" / name
            pools[f"{int(m.group(1)) // 1024} MiB" if int(m.group(1)) >= 1024 else f"{m.group(1)} KiB"] = {
                "total": _read_int(d / "nr_hugepages") or 0,
                "free": _read_int(d / "free_hugepages") or 0,
                "page_bytes": int(m.group(1)) * 1024,
            }
    mem = _meminfo(procfs)
    thp_raw = _read(sysfs / "kernel" / "mm" / "transparent_hugepage" / "enabled")
    thp = None
    if thp_raw:
        m = re.search(r"\[(\w+)\]", thp_raw)
        thp = m.group(1) if m else thp_raw
    total_bytes = sum(p["total"] * p["page_bytes"] for p in pools.values())
    if not pools and "HugePages_Total" in mem:
        size = mem.get("Hugepagesize", 2 << 20)
        total_bytes = mem["HugePages_Total"] * size
    details = {
        "pools": pools,
        "reserved_bytes": total_bytes,
        "transparent_hugepage": thp,
        "mem_total_bytes": mem.get("MemTotal"),
    }
    if total_bytes > 0:
        text = ", ".join(f"{v['total']} x {k} ({v['free']} free)" for k, v in pools.items() if v["total"])
        return Check("hugepages", OK, f"{_human_bytes(total_bytes)} reserved: {text or 'see /proc/meminfo'}", details)
    return Check(
        "hugepages",
        WARN,
        "no hugepages reserved: the registered DRAM staging pool uses 4 KiB pages (more TLB misses and "
        "slower RDMA registration); reserve some, e.g. sysctl vm.nr_hugepages=4096 for 8 GiB of 2 MiB pages"
        + (f"; transparent hugepages: {thp}" if thp else ""),
        details,
    )


# ---- io_uring --------------------------------------------------------------------------------


def _default_uring_probe() -> tuple[bool, str]:
    from ..store.io_engines import uring_status

    return uring_status()


def check_io_uring(procfs: Path, probe: UringProbe) -> Check:
    disabled = _read_int(procfs / "sys" / "kernel" / "io_uring_disabled")
    ok, why = probe()
    details: dict[str, Any] = {"io_uring_disabled": disabled, "probe": why, "kernel": platform.release()}
    if disabled in (1, 2) and not ok:
        reason = f"io_uring is disabled by kernel.io_uring_disabled={disabled}; device I/O uses the thread pool"
        return Check("io_uring", WARN, reason + " (set it to 0, or accept slower I/O)", details)
    if ok:
        return Check("io_uring", OK, f"{why}; memkv.store._uring is usable (MEMKV_IO=auto picks it)", details)
    return Check("io_uring", WARN, f"{why}; device I/O falls back to the thread pool (MEMKV_IO=threads)", details)


# ---- data path -------------------------------------------------------------------------------


def _probe_direct(path: str) -> tuple[bool, str]:
    """Whether the store would open a file at `path` with O_DIRECT (store.device.open_direct decides).

    `path` is the block device or file itself (opened read-only), or a directory, where a scratch
    file is created and removed.
    """
    if not getattr(os, "O_DIRECT", 0):
        return False, "this platform has no O_DIRECT"
    scratch = None
    try:
        if os.path.exists(path) and not os.path.isdir(path):
            fd, direct = open_direct(path, os.O_RDONLY)
        else:
            fd_tmp, scratch = tempfile.mkstemp(prefix=".memkv-doctor-", dir=path)
            os.close(fd_tmp)
            fd, direct = open_direct(scratch, os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return False, f"cannot open it: {os.strerror(exc.errno or errno.EIO)}"
    finally:
        if scratch is not None:
            os.unlink(scratch)
    if direct:
        return True, "the store opens it with O_DIRECT (an aligned read works)"
    return False, "the store opens it buffered (O_DIRECT refused, MEMKV_DIRECT=0, or a memory filesystem)"


_REMOTE_FS = {"nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "fuse", "fuseblk", "ceph", "glusterfs", "lustre"}


def check_data_path(procfs: Path, data_path: str) -> Check:
    path = os.path.abspath(data_path)
    probe_at = path
    while not os.path.exists(probe_at):
        probe_at = os.path.dirname(probe_at)
    mount = mount_of(probe_at, str(procfs / "mounts"))
    details: dict[str, Any] = {
        "path": path,
        "probed": probe_at,
        "mount": mount[0] if mount else None,
        "fstype": mount[1] if mount else None,
    }
    try:
        st = os.statvfs(probe_at if os.path.isdir(probe_at) else os.path.dirname(probe_at))
        details["free_bytes"] = st.f_bavail * st.f_frsize
    except OSError:
        pass
    ok, why = _probe_direct(probe_at)
    details["o_direct"] = ok
    where = f"{path}" + (f" (checked {probe_at}, the nearest existing parent)" if probe_at != path else "")
    fs = f" on {details['fstype']}" if details["fstype"] else ""
    free = f", {_human_bytes(details['free_bytes'])} free" if "free_bytes" in details else ""
    fstype = details["fstype"] or ""
    if fstype in MEMORY_FILESYSTEMS:
        return Check(
            "o_direct",
            WARN,
            f"{where}{fs}: memory-backed filesystem (the store uses buffered, memory-mapped I/O there); "
            "blocks do not survive a reboot and compete with DRAM: put the store on NVMe",
            details,
        )
    if ok and fstype in _REMOTE_FS:
        return Check(
            "o_direct",
            WARN,
            f"{where}{fs}: network or FUSE filesystem; O_DIRECT may be ignored or slow: prefer local NVMe{free}",
            details,
        )
    if ok:
        return Check("o_direct", OK, f"{where}{fs}: {why}{free}", details)
    if not os.access(probe_at, os.W_OK):
        return Check("o_direct", WARN, f"{where}{fs}: cannot test O_DIRECT here ({why}; not writable)", details)
    return Check(
        "o_direct",
        WARN,
        f"{where}{fs}: {why}; the store will use buffered I/O (page cache double-buffers and latency is noisier)",
        details,
    )


# ---- NIXL and UCX ----------------------------------------------------------------------------


def find_nixl() -> dict[str, Any] | None:
    """The installed NIXL distribution, its version and bundled plugins, without importing it."""
    for module, dist in (("nixl_cu12", "nixl-cu12"), ("nixl_cu13", "nixl-cu13"), ("nixl", "nixl")):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        version = None
        plugins: set[str] = set()
        try:
            version = importlib.metadata.version(dist)
            for f in importlib.metadata.files(dist) or []:
                m = re.search(r"libplugin_([A-Za-z0-9_]+)\.so", f.name)
                if m:
                    plugins.add(m.group(1))
        except importlib.metadata.PackageNotFoundError:
            pass
        return {"module": module, "version": version, "plugins": sorted(plugins)}
    return None


def check_nixl(finder: Callable[[], dict[str, Any] | None]) -> Check:
    info = finder()
    if info is None:
        return Check(
            "nixl",
            WARN,
            "not installed; pip install memkv[nixl] (or pip install --no-deps nixl-cu12 numpy to skip CUDA torch); "
            "the memkv+nixl:// backend is unavailable until then",
            {"installed": False},
        )
    plugins = info.get("plugins") or []
    text = f"{info['module']} {info.get('version') or '?'}; plugins: {', '.join(plugins) or 'not listed'}"
    if plugins and "UCX" not in plugins:
        return Check("nixl", WARN, text + "; the UCX plugin is missing", {"installed": True, **info})
    return Check("nixl", OK, text, {"installed": True, **info})


_HOST_BUILT = ("use a NIXL and UCX built against this host's rdma-core (the `nixl` package built from source "
               "against the host's UCX, which memkv prefers over the wheel): docs/nixl.md, section "
               "'Beside the host's rdma-core'")


def check_nixl_libraries(sysfs_root: str, environ: dict[str, str],
                         libs_finder: Callable[[], Path | None] = nixl_libraries.wheel_libs,
                         host_dirs: tuple[str, ...] | None = None) -> Check:
    """Would a NIXL process load two copies of libibverbs or libnl, or a mismatched rdma-core?"""
    libs = libs_finder()
    if libs is None:
        return Check("nixl_libraries", SKIP, "no NIXL wheel with a bundled UCX is installed (a host-built NIXL "
                     "links the host's libraries, so nothing can load twice)", {"wheel": False})
    dirs = host_dirs if host_dirs is not None else nixl_libraries.HOST_DIRS
    found = nixl_libraries.conflicts(libs, sysfs_root, dirs)
    setting = environ.get("UCX_MODULES")
    wheel_release, wheel_abi = nixl_libraries.bundled_rdma_core(libs)
    host_release, host_abis = nixl_libraries.host_rdma_core(dirs)
    providers = nixl_libraries.bundled_providers(libs)
    devices = nixl_libraries.rdma_devices(sysfs_root)
    details: dict[str, Any] = {
        "wheel": str(libs), "UCX_MODULES": setting, "devices": devices,
        "conflicting_modules": [dataclasses.asdict(c) for c in found],
        "wheel_rdma_core": wheel_release, "wheel_provider_abi": wheel_abi, "bundled_providers": sorted(providers),
        "host_rdma_core": host_release, "host_provider_abis": sorted(host_abis),
    }
    problems: list[str] = []
    for c in found:
        what = (f"UCX module {c.module} ({c.file}) needs {', '.join(c.via)} from the host, which loads a second "
                f"copy of {', '.join(c.duplicates)}; NIXL processes would crash (SIGSEGV) at exit")
        if c.devices:
            problems.append(f"{what}, and device(s) {', '.join(c.devices)} need that module: {_HOST_BUILT}")
        elif setting is not None and c.loads_under(setting):
            problems.append(f"{what}: UCX_MODULES={setting} lets it load and no device needs it; add "
                            f"{c.module} to the exclusions (UCX_MODULES=^{c.module}) or unset UCX_MODULES so "
                            "memkv excludes it")
    for device, driver in devices.items():
        if driver and not any(driver.startswith(p) for p in providers) and not any(
                driver.startswith(c.module) for c in found):
            problems.append(f"RDMA device {device} (driver {driver}) has no verbs provider in the NIXL wheel: its "
                            "libibverbs would load the host's provider and with it a second libibverbs; "
                            + _HOST_BUILT)
    if wheel_abi and host_abis and wheel_abi not in host_abis:
        problems.append(f"the NIXL wheel's libibverbs (rdma-core {wheel_release}) expects {wheel_abi} verbs "
                        f"providers, the host has {', '.join(sorted(host_abis))} (rdma-core {host_release}): "
                        + _HOST_BUILT)
    if problems:
        return Check("nixl_libraries", FAIL, "; ".join(problems), details)
    excluded = [c.module for c in found]
    text = (f"one copy of each RDMA library: NIXL wheel rdma-core {wheel_release or '?'}, host rdma-core "
            f"{host_release or 'not installed'}")
    if excluded and setting is None:
        text += (f"; memkv keeps UCX module(s) {', '.join(excluded)} from loading (they would load host copies; "
                 "no device here needs them)")
    return Check("nixl_libraries", OK, text, details)


_RDMA_TLS = {"rc", "rc_verbs", "rc_mlx5", "ud", "ud_verbs", "ud_mlx5", "dc", "dc_mlx5"}


def check_ucx(runner: Runner, environ: dict[str, str]) -> Check:
    out = runner(["ucx_info", "-d"])
    tls_env = environ.get("UCX_TLS")
    if out is None:
        return Check(
            "ucx",
            SKIP,
            "ucx_info not found (the NIXL wheel bundles its own UCX; transports are chosen at run time"
            + (f", UCX_TLS={tls_env}" if tls_env else "")
            + ")",
            {"ucx_info": False, "UCX_TLS": tls_env},
        )
    transports: dict[str, list[str]] = {}
    current_tl = None
    for line in out.splitlines():
        m = re.search(r"Transport:\s*(\S+)", line)
        if m:
            current_tl = m.group(1)
            transports.setdefault(current_tl, [])
            continue
        m = re.search(r"Device:\s*(\S+)", line)
        if m and current_tl:
            transports[current_tl].append(m.group(1))
    rdma = sorted(t for t in transports if t in _RDMA_TLS)
    details = {"ucx_info": True, "transports": transports, "rdma_transports": rdma, "UCX_TLS": tls_env}
    names = ", ".join(sorted(transports)) or "none"
    if rdma:
        return Check("ucx", OK, f"UCX transports: {names}", details)
    return Check("ucx", WARN, f"UCX transports: {names}; no RDMA transport (rc/ud/dc): NIXL will use TCP", details)


# ---- the report ------------------------------------------------------------------------------


def _verdict(checks: Sequence[Check]) -> str:
    if any(c.status == FAIL for c in checks):
        return NOT_READY
    if any(c.status == WARN for c in checks):
        return DEGRADED
    return READY


def run_checks(
    sysfs_root: str = "/sys",
    procfs_root: str = "/proc",
    data_path: str | None = None,
    runner: Runner | None = None,
    uring_probe: UringProbe | None = None,
    nixl_finder: Callable[[], dict[str, Any] | None] | None = None,
    environ: dict[str, str] | None = None,
) -> Report:
    """Run every check against the given roots and return the report (never raises for a check)."""
    sysfs, procfs = Path(sysfs_root), Path(procfs_root)
    run = runner or default_runner
    env = dict(os.environ) if environ is None else environ
    if data_path is None:
        default_dir = "/var/lib/memkv" if os.path.isdir("/var/lib/memkv") else tempfile.gettempdir()
        data_path = env.get("MEMKV_DATA_DIR") or default_dir
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("rdma", lambda: check_rdma(sysfs, use_pyverbs=sysfs_root == "/sys")),
        ("nvme", lambda: check_nvme(sysfs, run)),
        ("hugepages", lambda: check_hugepages(sysfs, procfs)),
        ("io_uring", lambda: check_io_uring(procfs, uring_probe or _default_uring_probe)),
        ("o_direct", lambda: check_data_path(procfs, data_path)),
        ("nixl", lambda: check_nixl(nixl_finder or find_nixl)),
        ("ucx", lambda: check_ucx(run, env)),
        ("nixl_libraries", lambda: check_nixl_libraries(sysfs_root, env)),
    ]
    checks = []
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # a broken probe is a finding, not a crash
            checks.append(Check(name, WARN, f"check crashed: {type(exc).__name__}: {exc}"))
    verdict = _verdict(checks)
    rdma_ok = next(c for c in checks if c.name == "rdma").status in (OK, WARN)
    uring_ok = next(c for c in checks if c.name == "io_uring").status == OK
    errors = sum(c.status == FAIL for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    if rdma_ok:
        message = "RDMA is available: NIXL can move blocks over RDMA."
    else:
        message = "No RDMA on this host: NIXL will use TCP. Not ready for RDMA; fine for development and CI."
    from ..version import __version__

    summary = {
        "rdma": rdma_ok,
        "nixl_transport": "rdma" if rdma_ok else "tcp",
        "io_engine": "uring" if uring_ok else "threads",
        "errors": errors,
        "warnings": warnings,
        "message": message,
    }
    host = {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memkv": __version__,
    }
    return Report(verdict, summary, host, checks)


_MARK = {OK: "  ok ", WARN: " WARN", FAIL: " FAIL", SKIP: " skip"}


def format_report(report: Report) -> str:
    host = report.host
    lines = [f"memkv doctor: {host['hostname']} (Linux {host['kernel']}, memkv {host['memkv']})", ""]
    width = max(len(c.name) for c in report.checks)
    for c in report.checks:
        lines.append(f"[{_MARK.get(c.status, c.status)}] {c.name:<{width}}  {c.reason}")
    s = report.summary
    lines += [
        "",
        f"verdict: {report.verdict.upper()} ({s['errors']} error(s), {s['warnings']} warning(s))",
        f"  {s['message']}",
        f"  device I/O engine: {s['io_engine']}; NIXL transport: {s['nixl_transport']}",
    ]
    return "\n".join(lines)
