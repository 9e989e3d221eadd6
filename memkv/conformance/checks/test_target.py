"""The target's declaration (MKV-CAP-001, MKV-BLK-001, MKV-PRO-001)."""

from __future__ import annotations

import pytest

from memkv.conformance.requirements import declared_version, spec_version
from memkv.conformance.support import Context, check, payload, read
from memkv.transport import PROFILES, PutItem

MiB = 1024 * 1024


@pytest.mark.requirement("MKV-CAP-001")
def test_declares_profiles_limits_and_spec_version(memkv: Context) -> None:
    caps = memkv.caps
    check("MKV-CAP-001", "core" in caps.profiles, "core is part of every claim", "core in profiles",
          sorted(caps.profiles))
    unknown = set(caps.profiles) - set(PROFILES)
    check("MKV-CAP-001", not unknown, "claimed profiles are spec profiles", sorted(PROFILES), sorted(unknown))
    check("MKV-CAP-001", declared_version(caps.spec_version) is not None, "a declared spec version this suite "
          "certifies", f"1.0 .. {spec_version()}", caps.spec_version)
    limits = caps.limits
    check("MKV-CAP-001", limits.key_size == 16, "declared key size", 16, limits.key_size)
    for name in ("max_block_size", "max_batch", "max_user_meta", "max_lease_ms", "max_session_blocks"):
        value = getattr(limits, name)
        check("MKV-CAP-001", isinstance(value, int) and value > 0, f"limit {name} is a positive integer",
              "> 0", value)
    check("MKV-CAP-001", limits.min_block_size == 1, "declared min_block_size", 1, limits.min_block_size)


@pytest.mark.requirement("MKV-BLK-001")
def test_max_block_size_is_at_least_16_mib(memkv: Context) -> None:
    size = memkv.limits.max_block_size
    check("MKV-BLK-001", size >= 16 * MiB, "max_block_size is at least 16 MiB", f">= {16 * MiB}", size)


@pytest.mark.requirement("MKV-PRO-001")
def test_claimed_operations_are_supported(memkv: Context) -> None:
    """Every operation of a claimed profile answers (UNSUPPORTED/NotImplementedError fail)."""
    t = memkv.transport()
    key = memkv.key()
    t.put([PutItem(key, payload(1, 100))])[0].raise_for_status()
    check("MKV-PRO-001", read(t, key) == payload(1, 100), "core: put then get", "bytes", "other")
    t.exists([key])
    t.stat([key])
    lease = t.lookup([key], lease_ms=60_000)  # still live at the release, however busy the machine
    if lease.lease_id is not None:
        t.release_lease(lease.lease_id)
    if "sessions" in memkv.claimed:
        info = t.open_session(60.0, [key])
        t.append(info.session_id, [key])
        t.suspend(info.session_id, 60.0)
        t.resume(info.session_id)
        child = t.fork(info.session_id, 1)
        t.session_info(child.session_id)
        t.invalidate_session(child.session_id)
        t.close_session(child.session_id)
        t.close_session(info.session_id)
    if "durable" in memkv.claimed:
        check("MKV-PRO-001", memkv.target.restartable, "a durable target can be restarted by the suite",
              "Target.restartable", False)
    t.invalidate_model(bytes(16))
    t.invalidate_namespace()
    t.stats()
