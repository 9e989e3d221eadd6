"""A cluster of three `memkv serve` shards, registered in a real etcd and reached through
`memkv+etcd://` (membership, spec/cluster.md section 5), run in certification mode.

Profiles core, shared, sessions and cluster pass with nothing skipped: invalidation by prefix
follows chains whose blocks lie on several shards by walking them with CHILDREN (spec/cluster.md
MKV-CLU-013), so the prefix checks of MKV-INV-002 and MKV-INV-008 and the stateful model checks pass
like on one server; sessions span shards (spec/cluster.md section 3a).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from report_dirs import report_dir

from memkv.conformance.runner import Options, run

CERTIFIED_PROFILES = ("core", "shared", "sessions", "cluster")


# The whole certification of four profiles over three servers is one test: 136-234 s was measured on
# the shared 2-core machine, too close to the suite's 300 s per test.
@pytest.mark.timeout(900)
@pytest.mark.requirement("MKV-PRO-001", "MKV-CLU-010", "MKV-CLU-011", "MKV-CLU-013", "MKV-CLU-015", "MKV-CLU-056",
                         "MKV-INV-002", "MKV-INV-008")
def test_cluster_target_certification(tmp_path: Path) -> None:
    report = report_dir(tmp_path, "cluster")
    stream = io.StringIO()
    doc = run(Options(target="memkv.conformance.targets.cluster:local?shards=3&etcd=1", certify=True,
                      report_dir=str(report), stream=stream))
    print(stream.getvalue()[-3000:])
    assert doc["target"]["url"].startswith("memkv+etcd://"), doc["target"]
    assert doc["claimed_profiles"] == ["cluster", "core", "sessions", "shared"]
    for name in CERTIFIED_PROFILES:
        profile = doc["profiles"][name]
        assert profile["status"] == "pass" and profile["skip"] == 0 and profile["fail"] == 0, (name, profile)
    failed = {t["name"] for t in doc["tests"] if t["status"] in ("fail", "error")}
    assert failed == set(), failed
    assert doc["verdict"] == "CERTIFIED" and not doc["blocking"], (doc["verdict"], doc["blocking"])
    passed = {t["name"] for t in doc["tests"] if t["status"] == "pass"}
    assert {"test_invalidate_prefix_removes_descendants", "test_invalidate_prefix_of_a_deep_chain",
            "test_invalidate_prefix_of_a_key_that_is_not_stored", "test_model_core", "test_model_sessions",
            "test_parallel_clients_history", "test_invalidate_model", "test_invalidate_namespace",
            "test_cluster_chain_lookup_and_its_lease", "test_a_session_longer_than_one_request_works_end_to_end",
            "test_model_sessions_under_eviction"} <= passed
