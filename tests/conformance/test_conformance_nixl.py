"""The memkv server through the NIXL client is CERTIFIED for every profile it claims.

The checks ran just before this test, as `memkv/conformance/checks/...::test_x[nixl]`
(memkv/conformance/per_backend.py): the suite starts the server itself with `--nixl on`; UCX is forced
onto TCP in both processes (the CI machine has no RDMA) and the client runs in strict mode
(MEMKV_TRANSPORT=nixl), so a silent fall-back to the TCP data path would fail instead of
certifying the wrong thing. Skipped, with the reason, when NIXL is not importable.
"""

from __future__ import annotations

import pytest
from helpers_certification import assert_certified

from memkv.conformance.per_backend import Certification

NIXL_CLAIMS = ["admin", "core", "nixl", "secure", "sessions", "shared", "wire"]


@pytest.mark.requirement("MKV-PRO-001")
@pytest.mark.memkv_backend("nixl")
def test_nixl_backend_is_certified(memkv_certification: Certification) -> None:
    assert_certified(memkv_certification, "nixl", NIXL_CLAIMS)
    assert (memkv_certification.report_dir / "results.json").exists()
