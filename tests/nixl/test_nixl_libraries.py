"""Which bundled UCX modules memkv keeps from loading, and what `memkv doctor` says (MKV-WIRE-030).

The wheel and host libraries are the real ones where the host has them (CI installs rdma-core);
RDMA devices come from fake sysfs trees, and the mismatch case from a fake wheel and host.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memkv.cli.doctor_checks import FAIL, OK, SKIP, check_nixl_libraries
from memkv.nixl import libraries as nixl_libraries

WHEEL = nixl_libraries.wheel_libs()
HOST_HAS_RDMA_CORE = nixl_libraries.host_library("libefa.so.1") is not None
needs_wheel_and_rdma_core = pytest.mark.skipif(
    WHEEL is None or not HOST_HAS_RDMA_CORE,
    reason="needs the NIXL wheel and the host's rdma-core (libefa.so.1), as CI installs them")


def fake_sysfs(root: Path, devices: dict[str, str]) -> str:
    drivers = root / "bus" / "drivers"
    (root / "class" / "infiniband").mkdir(parents=True, exist_ok=True)
    for name, driver in devices.items():
        (drivers / driver).mkdir(parents=True, exist_ok=True)
        dev = root / "devices" / name
        dev.mkdir(parents=True)
        (dev / "driver").symlink_to(drivers / driver)
        (root / "class" / "infiniband" / name).mkdir()
        (root / "class" / "infiniband" / name / "device").symlink_to(dev)
    return str(root)


@needs_wheel_and_rdma_core
@pytest.mark.requirement("MKV-WIRE-030")
def test_efa_module_is_excluded_without_an_efa_device(tmp_path: Path) -> None:
    decided = nixl_libraries.plan({}, fake_sysfs(tmp_path, {"mlx5_0": "mlx5_core"}))
    assert decided.exclude == ("efa",) and decided.needed == ()
    assert decided.ucx_modules() == "^efa"  # ib and mlx5 (the device present) stay enabled
    efa = nixl_libraries.conflicts(WHEEL, str(tmp_path))[0]  # type: ignore[arg-type]
    assert "libefa.so.1" in efa.via and {"libibverbs", "libnl-3", "libnl-route-3"} <= set(efa.duplicates)


@needs_wheel_and_rdma_core
@pytest.mark.requirement("MKV-WIRE-030")
def test_efa_module_stays_where_an_efa_device_exists(tmp_path: Path) -> None:
    decided = nixl_libraries.plan({}, fake_sysfs(tmp_path, {"rdmap0s6": "efa"}))
    assert decided.exclude == () and [c.devices for c in decided.needed] == [("rdmap0s6",)]
    assert decided.ucx_modules() is None


def test_a_user_setting_of_ucx_modules_is_left_alone(tmp_path: Path) -> None:
    env = {"UCX_MODULES": "^ib"}
    decided = nixl_libraries.prepare_environment(env, fake_sysfs(tmp_path, {}))
    assert env == {"UCX_MODULES": "^ib"} and decided.user_setting == "^ib"


def test_module_base_names_and_allow_lists() -> None:
    assert nixl_libraries.module_name("libuct_ib_efa.so.0.0.0") == "efa"
    assert nixl_libraries.module_name("libuct_cma.so.0.0.0") == "cma"
    assert nixl_libraries.module_name("libucx_perftest_cuda.so.0.0.0") == "cuda"
    assert nixl_libraries.module_name("libfoo.so") is None
    assert nixl_libraries.base_name("libibverbs-1de1263b.so.1.14.48.0") == "libibverbs"
    assert nixl_libraries.base_name("libnl-route-3.so.200") == "libnl-route-3"
    assert not nixl_libraries.allowed_by("^efa,cma", "efa") and nixl_libraries.allowed_by("^cma", "efa")
    assert nixl_libraries.allowed_by("all", "efa") and not nixl_libraries.allowed_by("ib,tcp", "efa")


# ---- memkv doctor ---------------------------------------------------------------------------------
def _doctor(sysfs: str, env: dict[str, str]) -> tuple[str, str]:
    check = check_nixl_libraries(sysfs, env)
    return check.status, check.reason


@needs_wheel_and_rdma_core
@pytest.mark.requirement("MKV-WIRE-030")
def test_doctor_ok_when_memkv_excludes_the_module(tmp_path: Path) -> None:
    status, reason = _doctor(fake_sysfs(tmp_path, {"mlx5_0": "mlx5_core"}), {})
    assert status == OK and "keeps UCX module(s) efa from loading" in reason


@needs_wheel_and_rdma_core
@pytest.mark.requirement("MKV-WIRE-030")
def test_doctor_fails_when_an_efa_device_needs_the_module(tmp_path: Path) -> None:
    status, reason = _doctor(fake_sysfs(tmp_path, {"rdmap0s6": "efa"}), {})
    assert status == FAIL and "rdmap0s6" in reason and "built against this host's rdma-core" in reason


@needs_wheel_and_rdma_core
@pytest.mark.requirement("MKV-WIRE-030")
def test_doctor_fails_when_the_users_ucx_modules_lets_the_module_load(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, {})
    status, reason = _doctor(sysfs, {"UCX_MODULES": "^cma"})
    assert status == FAIL and "UCX_MODULES=^efa" in reason
    assert _doctor(sysfs, {"UCX_MODULES": "^ib"})[0] == OK  # ib excluded: its efa sub-module never loads


@pytest.mark.skipif(WHEEL is None, reason="needs the NIXL wheel")
@pytest.mark.requirement("MKV-WIRE-030")
def test_doctor_fails_for_a_device_without_a_bundled_provider(tmp_path: Path) -> None:
    status, reason = _doctor(fake_sysfs(tmp_path, {"bnxt_re0": "bnxt_en"}), {})
    assert status == FAIL and "no verbs provider in the NIXL wheel" in reason


@pytest.mark.requirement("MKV-WIRE-030")
def test_doctor_fails_when_the_wheel_and_host_rdma_core_disagree(tmp_path: Path) -> None:
    wheel = tmp_path / "nixl_cu12.libs"
    (wheel / "ucx").mkdir(parents=True)
    (wheel / "libibverbs-0123abcd.so.1.14.48.0").write_bytes(b"\0lib%s-rdmav34.so\0")
    host = tmp_path / "host"
    (host / "libibverbs").mkdir(parents=True)
    (host / "libibverbs.so.1.14.60.0").write_bytes(b"")
    (host / "libibverbs.so.1").symlink_to(host / "libibverbs.so.1.14.60.0")
    (host / "libibverbs" / "libmlx5-rdmav40.so").write_bytes(b"")
    check = check_nixl_libraries(fake_sysfs(tmp_path / "sys", {}), {}, lambda: wheel, (str(host),))
    assert check.status == FAIL and "expects rdmav34" in check.reason and "rdmav40" in check.reason
    assert check.details["wheel_rdma_core"] == "48" and check.details["host_rdma_core"] == "60"


def test_doctor_skips_without_a_wheel(tmp_path: Path) -> None:
    assert check_nixl_libraries(str(tmp_path), {}, lambda: None).status == SKIP
