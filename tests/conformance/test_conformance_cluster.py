"""A cluster of three `memkv serve` shards through the cluster client, run in certification mode.

Profiles shared, sessions (sessions across shards, spec/cluster.md section 3a) and cluster pass.
Core does not certify yet: invalidation by prefix cannot follow a chain from one shard to another
(spec/cluster.md MKV-CLU-013 and its note), so the prefix checks of MKV-INV-002 fail, and the
stateful model checks, which also invalidate prefixes (the sessions model too, its failure counted
against MKV-INV-002 of core), fail with them. This test pins that exact gap: any other failure, or
a fix that makes the prefix checks pass, changes its outcome.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from report_dirs import report_dir

from memkv.conformance.runner import Options, run

PREFIX_GAP = {"test_invalidate_prefix_removes_descendants", "test_invalidate_prefix_of_a_deep_chain"}
FAILS_WITH_THE_GAP = {"test_model_core", "test_model_sessions"}


@pytest.mark.requirement("MKV-PRO-001", "MKV-CLU-010", "MKV-CLU-011", "MKV-CLU-015", "MKV-CLU-056")
def test_cluster_target_certification(tmp_path: Path) -> None:
    report = report_dir(tmp_path, "cluster")
    stream = io.StringIO()
    doc = run(Options(target="memkv.conformance.targets.cluster:local?shards=3", certify=True, report_dir=str(report),
                      stream=stream))
    print(stream.getvalue()[-3000:])
    assert doc["claimed_profiles"] == ["cluster", "core", "sessions", "shared"]
    for name in ("shared", "sessions", "cluster"):
        profile = doc["profiles"][name]
        assert profile["status"] == "pass" and profile["skip"] == 0 and profile["fail"] == 0, profile
    failed = {t["name"] for t in doc["tests"] if t["status"] in ("fail", "error")}
    # The 4-block chain of the first prefix check lands on one shard in 1 run of 27 (its keys are
    # random each run) and then passes; the 10-deep chain practically never does.
    assert "test_invalidate_prefix_of_a_deep_chain" in failed, failed
    assert failed <= PREFIX_GAP | FAILS_WITH_THE_GAP, failed
    assert doc["verdict"] == "NOT CERTIFIED" and doc["blocking"] == ["MKV-INV-002"], doc["blocking"]
    passed = {t["name"] for t in doc["tests"] if t["status"] == "pass"}
    assert {"test_parallel_clients_history", "test_invalidate_model", "test_invalidate_namespace",
            "test_cluster_chain_lookup_and_its_lease", "test_a_session_longer_than_one_request_works_end_to_end",
            "test_model_sessions_under_eviction"} <= passed
