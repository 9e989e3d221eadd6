"""Several clients in parallel processes; their histories checked per key (MKV-OPS-012, MKV-INV-007)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from memkv.conformance.history import check_history
from memkv.conformance.support import Context, fail
from memkv.conformance.timing import scaled

CLIENTS = 3


@pytest.mark.requirement("MKV-OPS-012", "MKV-INV-007")
def test_parallel_clients_history(memkv: Context) -> None:
    ns = memkv.namespace("conc")
    ops = 150 if memkv.certify else 100
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "memkv.conformance.worker", "history",
                               "--target", memkv.target.spec,
                               "--namespace", ns, "--client", str(c), "--seed", str(memkv.seed), "--ops", str(ops)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in range(CLIENTS)]
    history: list[dict[str, Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=scaled(240))
        if proc.returncode != 0:
            pytest.fail(f"a client process failed: {err[-1500:]}")
        history.extend(json.loads(line) for line in out.splitlines() if line.startswith("{"))
    unknown = [o for o in history if o["status"] == "UNKNOWN"]
    if len(unknown) > len(history) // 2:
        pytest.fail(f"most operations ended with unknown outcomes: {unknown[0]['value']}")
    problems = check_history(history)
    for requirement, text in problems:
        fail(requirement, text, "a history allowed by the spec", "violation",
             f"{CLIENTS} processes x {ops} ops (put/get/invalidate) on 4 shared keys, seed {memkv.seed}")
