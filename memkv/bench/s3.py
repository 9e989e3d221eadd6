"""What the S3 endpoint costs against the native path, measured in one run (issue 13, item 4).

Starts `memkv serve --s3-listen` (a subprocess on 127.0.0.1, authentication on), then stores and
loads the same number of fresh blocks per size through: memkv+tcp (put/get), NIXL's OBJ backend
(DRAM -> OBJ WRITE and OBJ -> DRAM READ, what Dynamo KVBM's G4 does) and boto3 (PutObject,
GetObject). Prints MiB/s per path and operation, and each S3 path's ratio to memkv+tcp.

    python -m memkv.bench.s3 --sizes 2,16 --blocks 16 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memkv.transport import PutItem

from ..connect import connect
from ..credentials import parse_credential
from ..keys import key_from_sequence_hash
from ..nixl.obj import ObjAgent
from ..server.testing import ServerProcess, write_keys_file

MiB = 1024 * 1024
_hashes = itertools.count(1)


def _rate(size: int, count: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return size * count / MiB / (time.perf_counter() - started)


def _nixl_obj(endpoint: str, kid: str, secret: str, mode: str, blocks: list[np.ndarray]) -> tuple[float, float]:
    agent = ObjAgent(f"bench-{mode}-{os.getpid()}-{next(_hashes)}", endpoint, "bench", kid, secret, req_checksum=mode)
    hashes = [next(_hashes) for _ in blocks]
    back = [np.zeros(b.nbytes, dtype=np.uint8) for b in blocks]
    size, count = blocks[0].nbytes, len(blocks)
    put = _rate(size, count, lambda: agent.write(list(zip(blocks, hashes, strict=True))))
    get = _rate(size, count, lambda: agent.read([(b, h, 0) for b, h in zip(back, hashes, strict=True)]))
    assert all(np.array_equal(a, b) for a, b in zip(back, blocks, strict=True))
    return put, get


def measure(proc: ServerProcess, cred: str, size: int, count: int) -> dict[str, tuple[float, float]]:
    """MiB/s of (store, load) per path, for `count` fresh blocks of `size` bytes."""
    blocks = [np.random.default_rng(i).integers(0, 256, size, dtype=np.uint8) for i in range(count)]
    kid, secret = parse_credential(cred)
    assert proc.s3_url is not None
    results: dict[str, tuple[float, float]] = {}

    hashes = [next(_hashes) for _ in blocks]
    keys = [key_from_sequence_hash(bytes(16), h) for h in hashes]
    with connect(proc.url, "bench", key=cred) as native:
        def put_all() -> None:
            for result in native.put([PutItem(k, b.data) for k, b in zip(keys, blocks, strict=True)]):
                result.raise_for_status()

        put = _rate(size, count, put_all)
        get = _rate(size, count, lambda: native.get(keys))
    results["memkv+tcp"] = (put, get)

    for mode in ("supported", "required"):
        label = "NIXL OBJ (aws-chunked, CRC64NVME)" if mode == "supported" else "NIXL OBJ (SHA-256 payload)"
        results[label] = _nixl_obj(proc.s3_url, kid, secret.hex(), mode, blocks)

    import boto3
    import botocore.config

    client = boto3.client("s3", endpoint_url=proc.s3_url, aws_access_key_id=kid, aws_secret_access_key=secret.hex(),
                          region_name="us-east-1", config=botocore.config.Config(s3={"addressing_style": "path"}))
    names = [str(next(_hashes)) for _ in blocks]
    payloads = [b.tobytes() for b in blocks]
    put = _rate(size, count, lambda: [client.put_object(Bucket="bench", Key=n, Body=p)
                                      for n, p in zip(names, payloads, strict=True)])
    get = _rate(size, count, lambda: [client.get_object(Bucket="bench", Key=n)["Body"].read() for n in names])
    results["boto3"] = (put, get)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2,16", help="block sizes in MiB, comma-separated")
    parser.add_argument("--blocks", type=int, default=16, help="blocks stored and loaded per size and path")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the median is reported")
    args = parser.parse_args()
    sizes = [int(s) * MiB for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="memkv-bench-s3-") as tmp:
        creds = write_keys_file(Path(tmp) / "keys.yaml", {"bench": [("bench", "write")]})
        capacity = max(sizes) * args.blocks * 5 * args.repeats * len(sizes) + 256 * MiB
        with ServerProcess(str(Path(tmp) / "store"), str(Path(tmp) / "keys.yaml"),
                           extra=["--s3-listen", "127.0.0.1:0", "--quiet"],
                           capacity=f"{capacity // MiB}MiB") as proc:
            print("| block | path | store MiB/s | load MiB/s | store vs memkv+tcp | load vs memkv+tcp |")
            print("|---|---|---|---|---|---|")
            for size in sizes:
                runs = [measure(proc, creds["bench"], size, args.blocks) for _ in range(args.repeats)]
                native = tuple(statistics.median(r["memkv+tcp"][i] for r in runs) for i in (0, 1))
                for path in runs[0]:
                    put, get = (statistics.median(r[path][i] for r in runs) for i in (0, 1))
                    print(f"| {size // MiB} MiB | {path} | {put:.0f} | {get:.0f} | {put / native[0]:.2f} | "
                          f"{get / native[1]:.2f} |", flush=True)
            proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
