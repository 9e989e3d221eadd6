"""`memkv doctor` against fake sysfs / procfs trees for hardware this machine does not have."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from memkv.cli import doctor as cli_doctor
from memkv.cli import doctor_checks as doctor
from memkv.cli.doctor_checks import DEGRADED, FAIL, NOT_READY, OK, READY, SKIP, WARN, run_checks

FIXTURES = Path(__file__).parent.parent / "fixtures"
SYSFS = FIXTURES / "sysfs" / "host_rdma_nvme"
PROCFS = FIXTURES / "procfs" / "host_rdma_nvme"

SMART_OK = {"critical_warning": 0, "temperature": 310, "avail_spare": 100, "percent_used": 3, "media_errors": 0}
UCX_RDMA = """
#      Transport: posix
#         Device: memory
#      Transport: tcp
#         Device: eth2
#      Transport: rc_mlx5
#         Device: mlx5_0:1
#      Transport: ud_verbs
#         Device: mlx5_0:1
"""
UCX_TCP = """
#      Transport: posix
#         Device: memory
#      Transport: tcp
#         Device: eth0
#         Device: lo
"""


def fake_runner(smart: dict[str, Any] | None = None, ucx: str | None = UCX_RDMA, nvme_cli: bool = True) -> Any:
    def run(argv: Sequence[str]) -> str | None:
        if argv[0] == "nvme":
            if not nvme_cli:
                return None
            if argv[1] == "version":
                return "nvme version 2.4\n"
            if argv[1] == "smart-log":
                return json.dumps(smart if smart is not None else SMART_OK)
        if argv[0] == "ucx_info":
            return ucx
        return None

    return run


def nixl_present() -> dict[str, Any]:
    return {"module": "nixl_cu12", "version": "1.5.1", "plugins": ["GDS", "POSIX", "UCX"]}


def checks(sysfs: Path = SYSFS, procfs: Path = PROCFS, data_path: str | None = None, **kw: Any) -> doctor.Report:
    kw.setdefault("runner", fake_runner())
    kw.setdefault("uring_probe", lambda: (True, "io_uring_setup works"))
    kw.setdefault("nixl_finder", nixl_present)
    kw.setdefault("environ", {})
    return run_checks(sysfs_root=str(sysfs), procfs_root=str(procfs), data_path=data_path or "/tmp", **kw)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the full fake sysfs tree."""
    dst = tmp_path / "sys"
    shutil.copytree(SYSFS, dst)
    return dst


def test_full_production_host_is_ready(tmp_path: Path) -> None:
    report = checks(data_path=str(tmp_path))
    rdma = report.check("rdma")
    assert rdma.status == OK, rdma.reason
    assert "mlx5_0/1" in rdma.reason and "MTU 4096" in rdma.reason
    port = rdma.details["devices"][0]["ports"][0]
    assert port["active"] and port["link_up"] and port["link_layer"] == "Ethernet"
    assert port["active_mtu"] == 4096 and port["netdev_mtu"] == 9000
    assert [g["index"] for g in port["gids"]] == [0, 1, 3]  # the all-zero GID 4 is skipped
    assert any(g["type"] == "RoCE v2" and g["gid"].endswith("0a00:0005") for g in port["gids"])

    nvme = report.check("nvme")
    assert nvme.status == OK, nvme.reason
    ctrl = nvme.details["controllers"][0]
    assert ctrl["model"] == "SAMSUNG MZQL23T8HCLS-00A07" and ctrl["firmware"] == "GDC5602Q"
    assert ctrl["namespaces"] == [
        {"name": "nvme0n1", "bytes": 7501476528 * 512, "size": "3.8 TB", "logical_block_size": 4096}
    ]
    assert ctrl["health"]["temperature_c"] == 37 and ctrl["health"]["percent_used"] == 3

    huge = report.check("hugepages")
    assert huge.status == OK and huge.details["reserved_bytes"] == 4096 * 2 * 1024 * 1024
    assert huge.details["transparent_hugepage"] == "madvise"
    assert report.check("io_uring").status == OK
    assert report.check("nixl").status == OK and "UCX" in report.check("nixl").reason
    assert report.check("ucx").details["rdma_transports"] == ["rc_mlx5", "ud_verbs"]
    assert report.summary["rdma"] is True and report.summary["nixl_transport"] == "rdma"
    if report.check("o_direct").status == OK:
        assert report.verdict == READY
    else:  # a tmp dir without O_DIRECT (tmpfs) degrades the verdict, nothing else does
        assert report.verdict == DEGRADED


def test_empty_host_says_no_rdma_and_tcp(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    (tmp_path / "proc").mkdir()
    report = checks(
        tmp_path / "sys",
        tmp_path / "proc",
        runner=fake_runner(ucx=None, nvme_cli=False),
        nixl_finder=lambda: None,
    )
    assert report.verdict == NOT_READY
    rdma = report.check("rdma")
    assert rdma.status == FAIL and "no RDMA devices" in rdma.reason and "NIXL will use TCP" in rdma.reason
    assert report.summary["rdma"] is False and report.summary["nixl_transport"] == "tcp"
    assert "NIXL will use TCP" in report.summary["message"]
    assert report.check("nvme").status == WARN
    assert report.check("hugepages").status == WARN
    nixl = report.check("nixl")
    assert nixl.status == WARN and "pip install memkv[nixl]" in nixl.reason
    assert report.check("ucx").status == SKIP
    text = doctor.format_report(report)
    assert "NOT-READY" in text and "NIXL will use TCP" in text


def test_port_down_fails(tree: Path) -> None:
    port = tree / "class/infiniband/mlx5_0/ports/1"
    (port / "state").write_text("1: DOWN\n")
    (port / "phys_state").write_text("3: Disabled\n")
    report = checks(tree)
    assert report.check("rdma").status == FAIL
    assert "no port is ACTIVE" in report.check("rdma").reason
    assert report.verdict == NOT_READY and report.summary["nixl_transport"] == "tcp"


def test_small_mtu_and_missing_roce_v2_warn(tree: Path) -> None:
    (tree / "class/net/eth2/mtu").write_text("1500\n")
    types = tree / "class/infiniband/mlx5_0/ports/1/gid_attrs/types"
    for f in types.iterdir():
        f.write_text("IB/RoCE v1\n")
    rdma = checks(tree).check("rdma")
    assert rdma.status == WARN
    assert "active MTU 1024 < 4096" in rdma.reason and "no RoCE v2 GID" in rdma.reason


def test_nvme_health_and_missing_nvme_cli(tree: Path) -> None:
    bad = checks(tree, runner=fake_runner(smart={**SMART_OK, "critical_warning": 4}))
    assert bad.check("nvme").status == FAIL and "critical_warning=4" in bad.check("nvme").reason
    worn = checks(tree, runner=fake_runner(smart={**SMART_OK, "percent_used": 95}))
    assert worn.check("nvme").status == WARN and "wear 95%" in worn.check("nvme").reason
    blind = checks(tree, runner=fake_runner(nvme_cli=False))
    assert blind.check("nvme").status == WARN and "nvme-cli not installed" in blind.check("nvme").reason
    (tree / "class/nvme/nvme0/state").write_text("dead\n")
    assert checks(tree).check("nvme").status == FAIL


def test_ucx_without_rdma_transport_warns() -> None:
    ucx = checks(runner=fake_runner(ucx=UCX_TCP)).check("ucx")
    assert ucx.status == WARN and "NIXL will use TCP" in ucx.reason
    assert ucx.details["transports"] == {"posix": ["memory"], "tcp": ["eth0", "lo"]}


def test_io_uring_disabled(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(PROCFS, proc)
    (proc / "sys/kernel/io_uring_disabled").write_text("2\n")
    check = checks(procfs=proc, uring_probe=lambda: (False, "io_uring_setup failed: EPERM")).check("io_uring")
    assert check.status == WARN and "io_uring_disabled=2" in check.reason
    assert checks(uring_probe=lambda: (False, "not built")).check("io_uring").status == WARN


def test_real_uring_probe_and_nixl_finder_run() -> None:
    report = run_checks(sysfs_root=str(SYSFS), procfs_root=str(PROCFS), runner=fake_runner(), environ={})
    assert report.check("io_uring").status in (OK, WARN)
    if doctor.find_nixl() is None:
        assert "pip install memkv[nixl]" in report.check("nixl").reason


def test_o_direct_on_tmpfs_warns() -> None:
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    check = doctor.check_data_path(Path("/proc"), "/dev/shm/memkv-not-there/store")
    assert check.details["probed"] == "/dev/shm"
    if check.details["fstype"] == "tmpfs":
        assert check.status == WARN and "memory-backed" in check.reason


def test_a_crashing_check_becomes_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> doctor.Check:
        raise RuntimeError("sysfs exploded")

    monkeypatch.setattr(doctor, "check_hugepages", boom)
    report = checks()
    assert report.check("hugepages").status == WARN and "sysfs exploded" in report.check("hugepages").reason


def test_json_schema_is_stable() -> None:
    data = json.loads(checks().to_json())
    assert data["schema"] == "memkv.doctor/1"
    assert set(data) == {"schema", "verdict", "summary", "host", "checks"}
    assert data["verdict"] in (READY, DEGRADED, NOT_READY)
    assert set(data["summary"]) >= {"rdma", "nixl_transport", "io_engine", "errors", "warnings", "message"}
    assert set(data["host"]) == {"hostname", "kernel", "python", "memkv"}
    assert [c["name"] for c in data["checks"]] == ["rdma", "nvme", "hugepages", "io_uring", "o_direct", "nixl", "ucx",
                                                  "nixl_libraries"]
    for c in data["checks"]:
        assert set(c) == {"name", "status", "reason", "details"} and c["status"] in (OK, WARN, FAIL, SKIP)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memkv")
    cli_doctor.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_json_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sys").mkdir()
    args = _parse(["doctor", "--json", "--sysfs-root", str(tmp_path / "sys"), "--procfs-root", str(PROCFS)])
    assert cli_doctor.run(args) == 1  # no RDMA: not ready
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == NOT_READY and data["summary"]["nixl_transport"] == "tcp"
    args = _parse(["doctor", "--sysfs-root", str(tmp_path / "sys"), "--procfs-root", str(PROCFS)])
    cli_doctor.run(args)
    assert "verdict: NOT-READY" in capsys.readouterr().out
