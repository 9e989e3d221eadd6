"""Where the time of one TCP put or get goes, client and server: `python -m memkv.bench.profile`.

A tracing profile of chosen functions only (no sampler is needed): each one on the data path
is wrapped so that its wall time is added to its place in a call tree (the chain of wrapped
functions above it in the same thread). The client loop runs in this process; the server runs
in a child process with the same wrappers and reports its tree when asked to stop. Times are
microseconds per operation, inclusive; a node's "self" is its time not spent in wrapped callees
(Python between the calls, or C code called directly such as xxhash). Each wrapped call costs
about a microsecond, which the totals include.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..blocks import MiB
from ..units import format_size, parse_size
from .common import remove_run_directory, run_directory

# (module, attribute path) of each wrapped function; the label is the attribute path.
CLIENT_POINTS = (
    ("memkv.backends.tcp", "TcpTransport.put"),
    ("memkv.backends.tcp", "TcpTransport.get_into"),
    ("memkv.backends.tcp", "payload_checksum"),
    ("memkv.backends.tcp", "TcpConnection.request"),
    ("memkv.wire.connection", "Connection.request_frame"),
    ("memkv.backends.tcp", "TcpConnection._sendmsg"),
    ("memkv.backends.tcp", "TcpTransport.wait"),
    ("memkv.backends.tcp", "TcpConnection._recv_frame"),
    ("memkv.backends.tcp", "TcpConnection._deliver"),
    ("memkv.backends.tcp", "TcpConnection._recv_hashed"),
    ("memkv.backends.tcp", "TcpConnection._recv_into"),
)
SERVER_POINTS = (
    ("memkv.server.connection", "Connection._wait_for_frame"),
    ("memkv.server.connection", "Connection._one_frame"),
    ("memkv.server.connection", "Connection._recv_exact"),
    ("memkv.wire.connection", "Connection.next_event"),
    ("memkv.server.connection", "Connection._dispatch"),
    ("memkv.server.connection", "Connection._put"),
    ("memkv.server.connection", "Connection._get"),
    ("memkv.store.engine", "StorageEngine._reserve"),
    ("memkv.store.write_path", "StreamedPayload.fill"),
    ("memkv.store.engine", "StorageEngine._settle"),
    ("memkv.store.engine", "StorageEngine.open_read"),
    ("memkv.store.engine", "StorageEngine.read_stream"),
    ("memkv.store.engine", "StorageEngine.close_read"),
    ("memkv.server.connection", "Connection._respond"),
    ("memkv.server.connection", "Connection._send"),
)


class CallTree:
    """Inclusive wall time and call counts per chain of wrapped functions, all threads merged."""

    def __init__(self) -> None:
        self.ns: dict[tuple[str, ...], int] = {}
        self.cpu_ns: dict[tuple[str, ...], int] = {}
        self.calls: dict[tuple[str, ...], int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, module: str, path: str) -> None:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        tree = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[str] = tree._stack()
            stack.append(path)
            key = tuple(stack)
            cpu = time.thread_time_ns()
            started = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter_ns() - started
                cpu = time.thread_time_ns() - cpu
                stack.pop()
                with tree._lock:
                    tree.ns[key] = tree.ns.get(key, 0) + spent
                    tree.cpu_ns[key] = tree.cpu_ns.get(key, 0) + cpu
                    tree.calls[key] = tree.calls.get(key, 0) + 1

        setattr(owner, name, timed)

    def _stack(self) -> list[str]:
        stack: list[str] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def reset(self) -> None:
        with self._lock:
            self.ns.clear()
            self.cpu_ns.clear()
            self.calls.clear()

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"path": list(k), "ns": v, "cpu_ns": self.cpu_ns[k], "calls": self.calls[k]}
                    for k, v in self.ns.items()]


def render(rows: list[dict[str, Any]], ops: int) -> list[str]:
    """The tree as lines: microseconds per operation, wall time inclusive and self, CPU time of the
    thread inclusive, and calls per operation (rows of several reports of one tree are summed)."""
    total: dict[tuple[str, ...], int] = {}
    cpu: dict[tuple[str, ...], int] = {}
    calls: dict[tuple[str, ...], int] = {}
    for row in rows:
        path = tuple(row["path"])
        total[path] = total.get(path, 0) + row["ns"]
        cpu[path] = cpu.get(path, 0) + row["cpu_ns"]
        calls[path] = calls.get(path, 0) + row["calls"]
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in total:
        children.setdefault(path[:-1], []).append(path)
    lines = [f"{'wall us':>9} {'self':>8} {'cpu us':>8} {'calls':>6}  function (per operation)"]

    def walk(path: tuple[str, ...]) -> None:
        for child in sorted(children.get(path, []), key=lambda p: -total[p]):
            inner = sum(total[c] for c in children.get(child, []))
            lines.append(f"{total[child] / ops / 1e3:>9.1f} {(total[child] - inner) / ops / 1e3:>8.1f} "
                         f"{cpu[child] / ops / 1e3:>8.1f} {calls[child] / ops:>6.2f}  "
                         f"{'  ' * (len(child) - 1)}{child[-1]}")
            walk(child)

    walk(())
    return lines


# ---- the server child ----------------------------------------------------------------------------

def serve_main(data_dir: str, keys_file: str, capacity: int, trace: bool) -> None:
    """Run a profiled server; print its port; on a line on stdin reset ("reset") or report ("report":
    the call tree and the process's CPU time since the reset)."""
    tree = CallTree()
    if trace:
        for module, path in SERVER_POINTS:
            tree.wrap(module, path)
    from ..server.testing import in_process_server

    server = in_process_server(data_dir, keys_file, capacity=capacity, admin_listen="off",
                               buffer_memory=1024 * MiB)
    port = server.address[1]
    print(f"port {port}", flush=True)
    cpu = time.process_time_ns()
    for line in sys.stdin:
        if line.strip() == "reset":
            tree.reset()
            cpu = time.process_time_ns()
            print("ok", flush=True)
        elif line.strip() == "report":
            print(json.dumps({"tree": tree.to_json(), "cpu_ns": time.process_time_ns() - cpu}), flush=True)
    server.shutdown(0)


class _ProfiledServer:
    def __init__(self, data_dir: str, keys_file: str, capacity: int, trace: bool) -> None:
        command = [sys.executable, "-m", "memkv.bench.profile", "serve", data_dir, keys_file, str(capacity),
                   "trace" if trace else "time"]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._line()
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"profiled server did not start: {line!r}")
        self.port = int(line.split()[1])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _profiled_server(directory: str | None, capacity: int, trace: bool) -> Iterator[tuple[_ProfiledServer, str]]:
    from ..server.testing import write_keys_file

    root = run_directory("memkv-profile-", directory)
    try:
        keys_file = os.path.join(root, "keys.yaml")
        credential = write_keys_file(keys_file, {"bench": [("bench", "write")]})["bench"]
        server = _ProfiledServer(os.path.join(root, "store"), keys_file, capacity, trace)
        try:
            yield server, credential
        finally:
            server.close()
    finally:
        remove_run_directory(root)


def profile(op: str, size: int, seconds: float, directory: str | None, trace: bool = True) -> dict[str, Any]:
    """Run `op` of `size` blocks for `seconds` against a profiled server: wall and CPU time per
    operation of both processes and (with `trace`) both call trees."""
    from ..backends.tcp import TcpTransport
    from ..transport import PutItem
    from .common import bench_buffers

    keep = 16  # blocks stored for gets; puts go to fresh keys, invalidated every `keep` puts
    with _profiled_server(directory, 4 * keep * size + 64 * MiB, trace) as (server, credential):
        client = CallTree()
        if trace:
            for module, path in CLIENT_POINTS:
                client.wrap(module, path)
        transport = TcpTransport("127.0.0.1", server.port, namespace="bench", key=credential, pool_size=1)
        try:
            sources, dests = bench_buffers(size, keep)
            stored = [os.urandom(16) for _ in range(keep)]
            for i, key in enumerate(stored):
                transport.put([PutItem(key, sources[i % len(sources)])])
            client.reset()
            server.ask("reset")
            ops, spent, client_cpu, server_cpu, fresh = 0, 0.0, 0, 0, []
            server_rows: list[dict[str, Any]] = []
            while spent < seconds:
                cpu = time.process_time_ns()
                started = time.perf_counter()
                if op == "put":
                    key = os.urandom(16)
                    result = transport.put([PutItem(key, sources[ops % len(sources)])])[0]
                    fresh.append(key)
                else:
                    result = transport.get_into([stored[ops % keep]], [dests[ops % len(dests)]])[0]
                spent += time.perf_counter() - started
                client_cpu += time.process_time_ns() - cpu
                if not result.ok:
                    raise RuntimeError(f"{op} failed: {result.status.name} {result.message}")
                ops += 1
                if len(fresh) == keep:  # neither timed nor in the server's tree
                    report = json.loads(server.ask("report"))
                    server_rows, server_cpu = server_rows + report["tree"], server_cpu + report["cpu_ns"]
                    transport.invalidate_keys(fresh)
                    server.ask("reset")
                    fresh = []
            report = json.loads(server.ask("report"))
            server_rows, server_cpu = server_rows + report["tree"], server_cpu + report["cpu_ns"]
        finally:
            transport.close()
    return {"op": op, "size": size, "ops": ops, "seconds": spent, "us_per_op": spent / ops * 1e6,
            "gb_per_s": ops * size / spent / 1e9, "client_cpu_us_per_op": client_cpu / ops / 1e3,
            "server_cpu_us_per_op": server_cpu / ops / 1e3, "client": client.to_json(), "server": server_rows}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        serve_main(args[1], args[2], int(args[3]), args[4] == "trace")
        return 0
    parser = argparse.ArgumentParser(prog="python -m memkv.bench.profile",
                                     description="where the time of a TCP put/get goes, client and server")
    parser.add_argument("--sizes", default="2MiB", help="block sizes, e.g. 2MiB,16MiB")
    parser.add_argument("--ops", default="put,get")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per op and size")
    parser.add_argument("--dir", default=None, help="where the store lives (e.g. /dev/shm/memkv-profile)")
    parser.add_argument("--no-trace", action="store_true",
                        help="no call trees: wall and process CPU time per operation only (for A/B runs)")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(args)
    reports = [profile(op, parse_size(size), opts.seconds, opts.dir, not opts.no_trace)
               for size in opts.sizes.split(",") for op in opts.ops.split(",")]
    if opts.json:
        json.dump(reports, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for report in reports:
        print(f"{report['op']} {format_size(report['size'])}: {report['ops']} ops, {report['us_per_op']:.0f} us/op, "
              f"{report['gb_per_s']:.2f} GB/s; CPU us/op: client {report['client_cpu_us_per_op']:.0f}, "
              f"server {report['server_cpu_us_per_op']:.0f}")
        if not report["client"]:
            continue
        for side in ("client", "server"):
            print(f"  {side}:")
            for line in render(report[side], report["ops"]):
                print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
