"""NIXL's OBJ backend (Dynamo KVBM's G4 path) against `memkv serve --s3-listen` (issue 13, item 4).

A real server process; a NIXL agent with the OBJ backend moves blocks DRAM -> OBJ and back,
named by 64-bit sequence hashes as KVBM names them, in both of the backend's checksum modes
(aws-chunked with a CRC64NVME trailer, and a signed SHA-256 payload).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memkv.nixl.agent import availability

pytest.importorskip("h11")
pytest.importorskip("botocore")
pytest.importorskip("awscrt")
NIXL_OK, NIXL_REASON = availability()
pytestmark = pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")

from memkv import connect  # noqa: E402
from memkv.errors import Unavailable  # noqa: E402
from memkv.keys import key_from_sequence_hash  # noqa: E402
from memkv.nixl.obj import ObjAgent  # noqa: E402
from memkv.server.keyring import parse_credential  # noqa: E402
from memkv.server.testing import ServerProcess, write_keys_file  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("s3-nixl")
    creds = write_keys_file(tmp / "keys.yaml", {"kvbm": [("kvbm-worker", "write")], "other": [("o", "write")]})
    with ServerProcess(str(tmp / "store"), str(tmp / "keys.yaml"), extra=["--s3-listen", "127.0.0.1:0"],
                       capacity="256MiB") as proc:
        assert proc.s3_url is not None
        yield proc, creds
        assert proc.terminate() == 0


def _agent(served: tuple[ServerProcess, dict[str, str]], mode: str, key_id: str = "kvbm-worker",
           bucket: str = "kvbm", secret: str | None = None) -> ObjAgent:
    proc, creds = served
    kid, raw_secret = parse_credential(creds[key_id])
    assert proc.s3_url is not None
    return ObjAgent(f"kvbm-{mode}-{os.urandom(4).hex()}", proc.s3_url, bucket, kid, secret or raw_secret.hex(),
                    req_checksum=mode)


def _block(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@pytest.mark.requirement("MKV-S3-003", "MKV-S3-010", "MKV-S3-020", "MKV-S3-032", "MKV-S3-040", "MKV-S3-041")
@pytest.mark.parametrize("mode", ["supported", "required"])
def test_dram_obj_round_trip_by_sequence_hash(served: tuple[ServerProcess, dict[str, str]], mode: str) -> None:
    agent = _agent(served, mode)
    seed = 1 if mode == "supported" else 2
    hashes = [int.from_bytes(os.urandom(8), "little") for _ in range(4)]
    blocks = [_block(2 * MiB, seed * 10 + i) for i in range(4)]
    assert agent.exists(hashes) == [False] * 4
    agent.write(list(zip(blocks, hashes, strict=True)))
    assert agent.exists(hashes) == [True] * 4
    back = [np.zeros(2 * MiB, dtype=np.uint8) for _ in range(4)]
    agent.read([(buf, h, 0) for buf, h in zip(back, hashes, strict=True)])
    assert all(np.array_equal(a, b) for a, b in zip(back, blocks, strict=True))
    # a READ at an offset is a ranged GET: only those bytes arrive
    part = np.zeros(4096, dtype=np.uint8)
    agent.read([(part, hashes[1], 12345)])
    assert np.array_equal(part, blocks[1][12345 : 12345 + 4096])


@pytest.mark.requirement("MKV-S3-010", "MKV-S3-002")
def test_blocks_kvbm_stored_are_native_blocks_and_back(served: tuple[ServerProcess, dict[str, str]]) -> None:
    """The shared-prefix case across paths: KVBM writes through S3, a native client reads, and back."""
    proc, creds = served
    agent = _agent(served, "supported")
    kvbm_hash, native_hash = 0x1234_5678_9ABC_DEF0, 2**64 - 2
    block = _block(16 * MiB, 7)
    agent.write([(block, kvbm_hash)])
    with connect(proc.url, "kvbm", key=creds["kvbm-worker"]) as native:
        assert native.get([key_from_sequence_hash(bytes(16), kvbm_hash)]) == [block.tobytes()]
        other = _block(MiB, 8)
        native.put_one(key_from_sequence_hash(bytes(16), native_hash), other.tobytes())
    back = np.zeros(MiB, dtype=np.uint8)
    agent.read([(back, native_hash, 0)])
    assert np.array_equal(back, other)


@pytest.mark.requirement("MKV-S3-020", "MKV-S3-021")
def test_wrong_secret_and_foreign_bucket_fail_the_transfer(served: tuple[ServerProcess, dict[str, str]]) -> None:
    block = _block(MiB, 9)
    with pytest.raises(Unavailable):
        _agent(served, "supported", secret="00" * 32).write([(block, 99)])
    with pytest.raises(Unavailable):
        _agent(served, "supported", key_id="o", bucket="kvbm").write([(block, 99)])
    assert _agent(served, "supported").exists([99]) == [False]


_SECOND_PROCESS = """
import sys, numpy as np
from memkv.nixl.obj import ObjAgent
endpoint, kid, secret, sequence_hash, size, expected = sys.argv[1:7]
buf = np.zeros(int(size), dtype=np.uint8)
ObjAgent("second-engine", endpoint, "kvbm", kid, secret).read([(buf, int(sequence_hash), 0)])
print("same" if buf.tobytes().hex()[:64] == expected else "different")
"""


@pytest.mark.requirement("MKV-S3-010", "MKV-S3-040")
def test_a_second_engine_process_reads_the_prefix_the_first_stored(
        served: tuple[ServerProcess, dict[str, str]]) -> None:
    import subprocess
    import sys

    proc, creds = served
    kid, secret = parse_credential(creds["kvbm-worker"])
    block = _block(2 * MiB, 11)
    _agent(served, "supported").write([(block, 4242)])
    assert proc.s3_url is not None
    out = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, proc.s3_url, kid, secret.hex(), "4242",
                          str(2 * MiB), block.tobytes().hex()[:64]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "same"


def test_a_server_killed_mid_run_fails_transfers_without_hanging(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With the AWS SDK's default retries a dead endpoint costs ~25.6 s per transfer (10 retries from
    25 ms, doubling); AWS_MAX_ATTEMPTS, read when the backend is made, is what docs/integrations.md
    tells a KVBM deployment to set."""
    import time

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    creds = write_keys_file(tmp_path / "keys.yaml", {"kvbm": [("kvbm-worker", "write")]})
    with ServerProcess(str(tmp_path / "store"), str(tmp_path / "keys.yaml"),
                       extra=["--s3-listen", "127.0.0.1:0"]) as proc:
        kid, secret = parse_credential(creds["kvbm-worker"])
        assert proc.s3_url is not None
        agent = ObjAgent("killed", proc.s3_url, "kvbm", kid, secret.hex(), timeout_s=30)
        block = _block(MiB, 12)
        agent.write([(block, 1)])
        proc.kill()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            agent.read([(np.zeros(MiB, dtype=np.uint8), 1, 0)])
        assert time.monotonic() - started < 10
