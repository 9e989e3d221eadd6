"""Campaign scenarios against a live server: a kill -9 crash loop under load, socket fuzzing, a soak.

Every acknowledged operation is recorded; after each kill the restarted server must show every
acknowledged put with its exact bytes, none of the acknowledged removals, and exact space
accounting (MKV-DUR-007, MKV-DUR-003, MKV-DUR-004).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import threading
import time
from typing import Any

from .. import connect
from ..errors import MemkvError
from ..server.testing import ServerProcess, in_process_server, open_raw_session, read_frame, write_keys_file
from ..store.engine import StorageEngine
from ..store.fault_sweep import space_error
from ..transport import PutItem, Transport
from ..wire.frames import HEADER_SIZE, Header, parse_header, sign
from .fuzz import _seed_corpus, mutate

KiB, MiB = 1024, 1024 * 1024
KEYS = 96


def _bytes_for(key: int, size: int) -> bytes:
    return random.Random(key * 7_919 + size).randbytes(size)


class _Load:
    """One writer: puts, deletes, invalidations and session operations; knows what was acknowledged."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.client: Transport = connect(url, namespace="torture")
        self.rng = rng
        self.counts = {"puts": 0, "bytes": 0, "removals": 0, "sessions": 0}
        self.uncertain: set[int] = set()  # the operation the kill interrupted

    def run(self, expected: dict[int, int], stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                key = self.rng.randrange(KEYS)
                self.uncertain = {key}
                choice = self.rng.random()
                if choice < 0.6:
                    size = self.rng.choice([64 * KiB, 256 * KiB, 1 * MiB, 3 * MiB])
                    if key in expected:
                        size = expected[key]  # blocks are immutable: a re-put carries the same bytes
                    if self.client.put([PutItem(key.to_bytes(16, "big"), _bytes_for(key, size))])[0].ok:
                        self.counts["puts"] += 1
                        self.counts["bytes"] += size
                        expected[key] = size
                elif choice < 0.75:
                    self.client.delete([key.to_bytes(16, "big")])
                    expected.pop(key, None)
                    self.counts["removals"] += 1
                elif choice < 0.85:
                    self.client.invalidate_keys([key.to_bytes(16, "big")])
                    expected.pop(key, None)
                    self.counts["removals"] += 1
                else:
                    present = [k.to_bytes(16, "big") for k in list(expected)[:4]]
                    self.uncertain = set()
                    info = self.client.open_session(60.0, present)
                    self.client.suspend(info.session_id, 60.0)
                    self.client.resume(info.session_id)
                    self.client.close_session(info.session_id)
                    self.counts["sessions"] += 4
                self.uncertain = set()
        except (MemkvError, OSError):
            pass  # the server was killed under us


def crash_loop(cycles: int, workdir: str, seed: int = 0, min_run_s: float = 0.3, max_run_s: float = 1.5
               ) -> dict[str, Any]:
    """`cycles` times: load, kill -9 at a random moment, restart, verify everything acknowledged."""
    rng = random.Random(seed)
    data = os.path.join(workdir, "crash-store")
    shutil.rmtree(data, ignore_errors=True)
    expected: dict[int, int] = {}
    totals = {"puts": 0, "bytes": 0, "removals": 0, "sessions": 0}
    lost = wrong = resurrected = space_errors = 0
    problems: list[str] = []
    removed_ever: set[int] = set()
    for _ in range(cycles):
        server = ServerProcess(data, capacity="512MiB", extra=["--admin-listen", "off", "--unit", "64KiB"])
        try:
            load = _Load(server.url, rng)
            before = set(expected)
            stop = threading.Event()
            worker = threading.Thread(target=load.run, args=(expected, stop))
            worker.start()
            time.sleep(rng.uniform(min_run_s, max_run_s))
            server.proc.kill()  # kill -9: no flush, no close
            server.proc.wait()
            stop.set()
            worker.join()
            load.client.close()
        finally:
            server.kill()
        for name, value in load.counts.items():
            totals[name] += value
        removed_ever |= before - set(expected)
        engine = StorageEngine(data, capacity=512 * MiB, unit=64 * KiB, flush_interval_s=3600.0)
        try:
            problem = space_error(engine)
            if problem:
                space_errors += 1
                problems.append(problem)
            for key in range(KEYS):
                present = engine.exists("torture", [key.to_bytes(16, "big")])[0]
                if key in load.uncertain:
                    if not present:
                        expected.pop(key, None)
                    continue
                if key in expected and not present:
                    lost += 1
                    problems.append(f"acknowledged block {key} lost")
                    expected.pop(key)
                elif key not in expected and present:
                    resurrected += 1
                    problems.append(f"removed block {key} came back")
                if present:
                    size = engine.stat("torture", [key.to_bytes(16, "big")])[0]
                    dest = bytearray(size.length if size else 0)
                    got = engine.get_into("torture", [key.to_bytes(16, "big")], [dest])[0]
                    if not got.ok or bytes(dest) != _bytes_for(key, len(dest)):
                        wrong += 1
                        problems.append(f"block {key} reads {got.status.name}")
                    expected.setdefault(key, len(dest))
        finally:
            engine.close()
    acknowledged = {f"acknowledged_{k}": v for k, v in totals.items()}
    return {"scenario": "crash-loop", "cycles": cycles, "seed": seed, **acknowledged,
            "lost": lost, "wrong_bytes": wrong, "resurrected": resurrected, "space_accounting_errors": space_errors,
            "problems": problems[:10]}


def soak(connections: int, seconds: float, workdir: str, seed: int = 0) -> dict[str, Any]:
    """`connections` clients at once for `seconds`, each writing and reading back its own blocks."""
    keys = os.path.join(workdir, "soak-keys.yaml")
    creds = write_keys_file(keys, {"torture": [("w", "write")]})
    server = in_process_server(os.path.join(workdir, "soak-store"), keys, admin_listen="off", unit="64KiB",
                               max_connections=connections + 16, max_unauthenticated=connections,
                               max_unauthenticated_per_peer=connections)
    wrong, errors, operations = [0], [0], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(connections)

    def client(n: int) -> None:
        rng = random.Random(seed * 100_003 + n)
        try:
            t = connect(f"memkv+tcp://{server.address[0]}:{server.address[1]}", namespace="torture", key=creds["w"])
        except MemkvError:
            with lock:
                errors[0] += 1
            return
        try:
            barrier.wait(timeout=120)
            while time.monotonic() < deadline:
                key = (n * 1_000 + rng.randrange(8)).to_bytes(16, "big")
                blob = random.Random(key).randbytes(rng.choice([4 * KiB, 64 * KiB]))
                try:
                    ok = t.put([PutItem(key, blob)])[0].ok
                    got = t.get([key])[0]
                except MemkvError:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    operations[0] += 2
                    if ok and got is not None and got != blob[: len(got)]:
                        wrong[0] += 1
        except threading.BrokenBarrierError:
            with lock:
                errors[0] += 1
        finally:
            t.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.shutdown()
    return {"scenario": "connection-soak", "connections": connections, "seconds": round(time.monotonic() - started, 1),
            "operations": operations[0], "wrong_bytes": wrong[0], "errors": errors[0]}


def socket_fuzz(frames: int, workdir: str, seed: int = 0, hang_after_s: float = 4.0) -> dict[str, Any]:
    """Mutated frames, re-signed so they pass the MAC, sent to a live server; it must answer or close."""
    keys = os.path.join(workdir, "fuzz-keys.yaml")
    creds = write_keys_file(keys, {"torture": [("w", "write")]})
    server = in_process_server(os.path.join(workdir, "fuzz-store"), keys, admin_listen="off", frame_timeout_s=0.25,
                               unit="64KiB")
    rng = random.Random(seed)
    corpus = _seed_corpus()
    answered = closed = hangs = 0
    hang_samples: list[str] = []
    sock: socket.socket | None = None
    request_id = 0
    try:
        for _ in range(frames):
            if sock is None:
                sock, tx, _ = open_raw_session(server.address, "torture", creds["w"])
                sock.settimeout(hang_after_s)
                request_id = 0
            data = mutate(rng.choice(corpus), rng, corpus)
            if not data:
                continue  # nothing to send: waiting for an answer would measure the client, not the server
            request_id += 1
            try:
                header = parse_header(data[:HEADER_SIZE])
                meta = data[HEADER_SIZE : HEADER_SIZE + header.meta_len]
                signed = Header(header.opcode, request_id, len(meta), min(header.payload_len, 64 * KiB),
                                header.flags, header.status)
                data = sign(tx, signed, meta).pack() + meta + os.urandom(signed.payload_len)
            except MemkvError:
                pass  # an unparseable header goes out as it is
            try:
                sock.sendall(data)
                read_frame(sock)
                answered += 1
            except TimeoutError:
                hangs += 1
                if len(hang_samples) < 5:
                    hang_samples.append(data[:96].hex())
                sock.close()
                sock = None
            except (ConnectionError, OSError):
                closed += 1
                sock.close()
                sock = None
        alive = connect(f"memkv+tcp://{server.address[0]}:{server.address[1]}", namespace="torture", key=creds["w"])
        try:
            still_serving = alive.put([PutItem(b"\x01" * 16, b"after the fuzz")])[0].ok
        finally:
            alive.close()
        health = server.health()[0]
    finally:
        if sock is not None:
            sock.close()
        server.shutdown()
    return {"scenario": "socket-fuzz", "frames": frames, "seed": seed, "answered": answered, "closed": closed,
            "hangs": hangs, "hang_samples": hang_samples, "server_still_serving": still_serving, "health": health,
            "crashes": 0 if still_serving and health != "unhealthy" else 1}
