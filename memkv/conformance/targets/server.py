"""The memkv server as a conformance target: a running one, or one the suite starts itself.

A running server (the vendor case):

    memkv conformance --target 'memkv+tcp://HOST:PORT?key_file=pool.yaml' --certify

`key_file` is a keys file in the server's own format (docs/server.md) holding a *pool* of test
namespaces, each with a read, a write and an admin key: the suite gives every check fresh
namespaces and needs keys of each role for the secure and admin checks. Generate one with

    python -m memkv.conformance.targets.server keys --out pool.yaml [--count 1024]

and give the server those namespaces too (use it as its keys file, or merge it into the real
one). Only namespaces whose name starts with `memkv-cf-` are used. Other options of the URL:
`admin_url=` (default: http://HOST:PORT+1), `data_dir=` (the server's data directory on this
machine, to damage stored bytes for MKV-BLK-006), `launcher=memkv` (the running server is
memkv's own build: the suite may start further `python -m memkv.server` instances for the
start-up checks and small-capacity instances), and the client options pool_size, timeout,
connect_timeout. Without `key_file` (a server run with --insecure-no-auth) any namespace works
and profile secure is not claimed.

A server the suite starts (`memkv-serve[?options]`, the same as
`memkv.conformance.targets.server:serve[?options]`): `python -m memkv.server` on 127.0.0.1 and a free
port, over a temporary data directory, with a generated pool keys file. Options: capacity
(default 256MiB), unit (256KiB), namespaces (pool size, 1024), scheme (memkv+tcp; memkv+nixl
for the same server reached through the NIXL client), serve_args (extra `memkv serve` flags,
space separated, e.g. to switch NIXL on). It also starts small-capacity servers for the eviction
checks, an unauthenticated one (MKV-NS-007), and tries keys files the server must refuse
(MKV-NS-008). It does not claim durable (the server declares what it claims).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

from memkv.errors import InvalidArgument, MemkvError
from memkv.transport import Transport

from ..target import Launched, Target

POOL_PREFIX = "memkv-cf-"
DEFAULT_POOL_SIZE = 1024
ROLES = ("read", "write", "admin")
OPERATOR_ID = "cf-operator"  # the pool keys file's operator key (MKV-ADM-009): credential(ns, "operator")
CLIENT_OPTIONS = ("pool_size", "timeout", "connect_timeout")
KiB = 1024
SMALL_UNIT = 64 * KiB


# ---- the namespace pool ---------------------------------------------------------------------------

def pool_namespace(index: int) -> str:
    return f"{POOL_PREFIX}{index:04d}"


def write_pool_keys_file(path: str, count: int = DEFAULT_POOL_SIZE) -> None:
    """A keys file (chmod 600) with `count` pool namespaces, each with a read, write and admin key."""
    from memkv.server.testing import write_keys_file

    write_keys_file(path, {pool_namespace(i): [(f"cf{i:04d}-{role}", role) for role in ROLES]
                           for i in range(count)}, operators=[OPERATOR_ID])


def _load_yaml(path: str) -> Any:
    import tomllib

    import yaml

    with open(path, "rb") as handle:
        raw = handle.read()
    if path.endswith(".toml"):
        return tomllib.loads(raw.decode("utf-8"))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(raw, Loader=loader)


class NamespacePool:
    """Test namespaces of a keys file and their credentials; hands out each namespace once."""

    def __init__(self, credentials: dict[str, dict[str, str]], keys_file: str, operator: str | None = None) -> None:
        self.credentials = credentials
        self.keys_file = keys_file
        self.operator = operator
        self.names = sorted(credentials)
        self._next = itertools.count(1)  # index 0 is the probe namespace (capabilities)
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()
        self.wrapped = False

    @classmethod
    def from_keys_file(cls, path: str) -> NamespacePool:
        data = _load_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("namespaces"), dict):
            raise InvalidArgument(
                f"key_file {path} is not a keys file with a pool of test namespaces; the conformance suite "
                "needs many namespaces with read, write and admin keys: generate one with "
                "`python -m memkv.conformance.targets.server keys --out pool.yaml` and give it to the server too")
        creds: dict[str, dict[str, str]] = {}
        for namespace, entries in data["namespaces"].items():
            if not str(namespace).startswith(POOL_PREFIX):
                continue
            roles = {str(e.get("role")): f"{e['id']}:{e['secret']}" for e in entries or [] if isinstance(e, dict)}
            if all(role in roles for role in ROLES):
                creds[str(namespace)] = roles
        if len(creds) < 64:
            raise InvalidArgument(f"key_file {path} has {len(creds)} usable pool namespaces ({POOL_PREFIX}NNNN with "
                                  "read, write and admin keys); the suite needs at least 64, 1024 recommended")
        operators = [f"{e['id']}:{e['secret']}" for e in data.get("operators") or [] if isinstance(e, dict)]
        return cls(creds, path, operators[0] if operators else None)

    @property
    def probe(self) -> str:
        return self.names[0]

    def allocate(self) -> str:
        with self._lock:
            index = next(self._next)
            if index >= len(self.names):
                self.wrapped = True
                self._next = itertools.count(2)
                index = 1
            return self.names[index]

    def resolve(self, namespace: str) -> str:
        """A pool namespace as itself; any other (valid) name is mapped to a pool namespace of its own."""
        if namespace in self.credentials:
            return namespace
        with self._lock:
            known = self._aliases.get(namespace)
        if known is None:
            known = self.allocate()
            with self._lock:
                known = self._aliases.setdefault(namespace, known)
        return known

    def credential(self, namespace: str, role: str) -> str | None:
        """A key of `role` on `namespace`; role "operator": the keys file's operator key, if any."""
        if role == "operator":
            return self.operator
        return self.credentials.get(self.resolve(namespace), {}).get(role)


# ---- the target ------------------------------------------------------------------------------------

class ServerTarget(Target):
    """A memkv server reached over the network with the memkv client of `scheme`."""

    def __init__(self, host: str, port: int, *, scheme: str = "memkv+tcp", pool: NamespacePool | None = None,
                 admin_url: str | None = None, data_dir: str | None = None, launcher: bool = False,
                 client_options: dict[str, str] | None = None, owned: Any = None, root: str | None = None,
                 started_by_suite: bool = False, launch_settings: dict[str, str] | None = None) -> None:
        self.host, self.port, self.scheme = host, port, scheme
        self.pool = pool
        self.admin_url = admin_url
        self.data_dir = data_dir
        self.launcher = launcher
        self.client_options = dict(client_options or {})
        self._owned = owned
        self._root = root
        self.started_by_suite = started_by_suite
        self.launch_settings = dict(launch_settings or {})
        self._children: list[Target] = []
        query: dict[str, str] = {}
        if pool is not None:
            query["key_file"] = pool.keys_file
        if admin_url:
            query["admin_url"] = admin_url
        if data_dir:
            query["data_dir"] = data_dir
        query.update(self.client_options)
        self.spec = urllib.parse.urlunsplit((scheme, f"{host}:{port}", "", urllib.parse.urlencode(query), ""))

    # ---- reaching the server ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _connect(self, namespace: str, key: str | None) -> Transport:
        import memkv

        options: dict[str, Any] = {}
        for name, value in self.client_options.items():
            options[name] = float(value) if "timeout" in name else int(value)
        return memkv.connect(self.url, namespace=namespace, key=key, **options)

    def _resolve(self, namespace: str) -> str:
        from memkv.namespaces import check_namespace

        check_namespace(namespace)  # the same validation as the client's: INVALID_ARGUMENT
        return namespace if self.pool is None else self.pool.resolve(namespace)

    def allocate_namespace(self, prefix: str = "c") -> str | None:
        return None if self.pool is None else self.pool.allocate()

    def connect(self, namespace: str) -> Transport:
        resolved = self._resolve(namespace)
        key = None if self.pool is None else self.pool.credential(resolved, "admin")
        return self._connect(resolved, key)

    def credential(self, namespace: str, role: str) -> str | None:
        return None if self.pool is None else self.pool.credential(self._resolve(namespace), role)

    def second_client(self, namespace: str, credentials: dict[str, str]) -> Transport | None:
        """A transport of `namespace` (used as given) with credentials {"key": "<id>:<secret>"} or {"role": R}."""
        if "role" in credentials:
            key = self.credential(namespace, credentials["role"])
            if key is None:
                return None
            return self._connect(self._resolve(namespace), key)
        return self._connect(namespace, credentials.get("key") or None)

    def wire_address(self) -> tuple[str, int] | None:
        return self.host, self.port

    def capabilities(self) -> Any:
        probe = "memkv-conformance-probe" if self.pool is None else self.pool.probe
        transport = self.connect(probe)
        try:
            return transport.capabilities()
        finally:
            transport.close()

    def describe(self) -> dict[str, Any]:
        from .. import target as target_module

        info: dict[str, Any] = {"spec": target_module.redact(self.spec),
                                "kind": f"memkv server over {self.scheme}" + (" (started by the suite)"
                                                                                if self.started_by_suite else ""),
                                "admin_url": self.admin_url, "pool_namespaces": len(self.pool.names) if self.pool
                                else None, "launcher": self.launcher}
        if self.started_by_suite:
            info["server"] = {"command": f"{os.path.basename(sys.executable)} -m memkv.server",
                              **self.launch_settings}
        return info

    # ---- inspection -----------------------------------------------------------------------------
    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        """Flip the first byte of the block's bytes in the device file (needs the server's data_dir)."""
        if not self.data_dir:
            return False
        from memkv.conformance.support import read

        device = os.path.join(self.data_dir, "device.img")
        if not os.path.exists(device):
            return False
        transport = self.connect(namespace)
        try:
            data = read(transport, key)
        finally:
            transport.close()
        if not data:
            return False
        needle = data[: min(len(data), 4096)]
        found = False
        chunk = 64 * 1024 * 1024
        with open(device, "r+b") as handle:
            offset = 0
            while True:
                handle.seek(offset)
                window = handle.read(chunk + len(needle))
                if len(window) < len(needle):
                    break
                pos = window.find(needle)
                while pos != -1 and pos < chunk:
                    handle.seek(offset + pos)
                    handle.write(bytes([window[pos] ^ 0xFF]))
                    found = True
                    pos = window.find(needle, pos + 1)
                offset += chunk
            handle.flush()
            os.fsync(handle.fileno())
        return found

    # ---- further servers -------------------------------------------------------------------------
    def launch(self, keys_file: str | None, insecure: bool = False, extra_args: Sequence[str] = (),
               capacity: str | None = None, unit: str | None = None) -> Launched | None:
        """Start another `python -m memkv.server` (launcher targets only); see memkv.conformance.target.Launched."""
        if not self.launcher:
            return None
        from memkv.server.testing import ServerProcess

        root = tempfile.mkdtemp(prefix="memkv-cf-launch-")
        settings = dict(self.launch_settings)
        args = ["--unit", unit or settings.get("unit", "256KiB"), "--log-level", "WARNING",
                *shlex.split(settings.get("serve_args", "")), *extra_args]
        if insecure:
            keys_file = None
        elif keys_file is None:
            if self.pool is None:
                return Launched(False, "this target has no keys file of its own to start a server with", None)
            keys_file = self.pool.keys_file
        try:
            proc = ServerProcess(os.path.join(root, "data"), keys_file, extra=args,
                                 capacity=capacity or settings.get("capacity", "256MiB"), startup_timeout=60)
        except RuntimeError as exc:
            shutil.rmtree(root, ignore_errors=True)
            return Launched(False, str(exc), None)
        log_text = ""
        with contextlib.suppress(OSError):
            log_text = proc.log_path.read_text(errors="replace")
        pool = self.pool if keys_file is not None and self.pool is not None and keys_file == self.pool.keys_file \
            else None
        if pool is None and keys_file is not None:
            try:
                pool = NamespacePool.from_keys_file(keys_file)
            except (InvalidArgument, OSError):
                pool = None
        target = ServerTarget(proc.host, proc.port, scheme=self.scheme, pool=pool, admin_url=proc.admin_url,
                              data_dir=os.path.join(root, "data"), launcher=False,
                              client_options=self.client_options, owned=proc, root=root, started_by_suite=True,
                              launch_settings=settings)
        self._children.append(target)
        return Launched(True, log_text, target)

    def make_small(self, capacity: int) -> Target | None:
        if not self.launcher:  # launch() starts nothing without launcher=memkv
            return None
        launched = self.launch(self.pool.keys_file if self.pool else None, insecure=self.pool is None,
                               capacity=str(capacity + SMALL_UNIT), unit=str(SMALL_UNIT))
        if launched is None or launched.target is None:
            raise RuntimeError(f"could not start a small-capacity server: {launched.output if launched else ''}")
        small = launched.target
        assert isinstance(small, ServerTarget)
        small.pool = self.pool  # one allocator across the servers of this run
        return small

    def send_sigterm(self) -> Any:
        """Send SIGTERM to a server this suite started (MKV-WIRE-020); the process to wait on, or None."""
        proc = getattr(self._owned, "proc", None)
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        return proc

    def close(self) -> None:
        for child in self._children:
            with contextlib.suppress(Exception):
                child.close()
        self._children.clear()
        if self._owned is not None:
            proc, self._owned = self._owned, None
            try:
                proc.terminate(timeout=30)
            except Exception:
                proc.kill()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def from_url(url: str) -> ServerTarget:
    """A running server named by a memkv+tcp:// (or memkv+nixl://) URL; see the module docstring."""
    parsed = urllib.parse.urlsplit(url)
    options = dict(urllib.parse.parse_qsl(parsed.query))
    key_file = options.pop("key_file", None)
    if "key" in options:
        raise InvalidArgument("the conformance suite needs a pool of test namespaces: give key_file=<keys file> "
                              "(python -m memkv.conformance.targets.server keys --out pool.yaml), not key=")
    admin_url = options.pop("admin_url", None)
    data_dir = options.pop("data_dir", None)
    launcher = options.pop("launcher", "") == "memkv"
    unknown = set(options) - set(CLIENT_OPTIONS)
    if unknown:
        raise InvalidArgument(f"unknown option(s) {sorted(unknown)} of a server target; known: key_file, admin_url, "
                              f"data_dir, launcher, {', '.join(CLIENT_OPTIONS)}")
    try:
        port = parsed.port or 9900
    except ValueError:
        raise InvalidArgument(f"bad port in {url!r}") from None
    host = parsed.hostname or "127.0.0.1"
    if admin_url is None:
        admin_url = f"http://{host}:{port + 1}"
    pool = NamespacePool.from_keys_file(key_file) if key_file else None
    return ServerTarget(host, port, scheme=parsed.scheme, pool=pool, admin_url=admin_url or None,
                        data_dir=data_dir, launcher=launcher, client_options=options)


def serve(capacity: str = "256MiB", unit: str = "256KiB", namespaces: str = str(DEFAULT_POOL_SIZE),
          scheme: str = "memkv+tcp", serve_args: str = "") -> ServerTarget:
    """Start `python -m memkv.server` on 127.0.0.1:<free port> with a generated pool keys file."""
    from memkv.server.testing import ServerProcess

    root = tempfile.mkdtemp(prefix="memkv-cf-server-")
    keys_file = os.path.join(root, "pool-keys.yaml")
    write_pool_keys_file(keys_file, int(namespaces))
    pool = NamespacePool.from_keys_file(keys_file)
    settings = {"capacity": capacity, "unit": unit, "serve_args": serve_args}
    data_dir = os.path.join(root, "data")
    try:
        proc = ServerProcess(data_dir, keys_file, capacity=capacity, startup_timeout=60,
                             extra=["--unit", unit, "--log-level", "WARNING", *shlex.split(serve_args)])
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    target = ServerTarget(proc.host, proc.port, scheme=scheme, pool=pool, admin_url=proc.admin_url,
                          data_dir=data_dir, launcher=True, owned=proc, root=root, started_by_suite=True,
                          launch_settings=settings)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memkv.conformance.targets.server")
    sub = parser.add_subparsers(dest="cmd", required=True)
    keys = sub.add_parser("keys", help="write a keys file with a pool of test namespaces (chmod 600)")
    keys.add_argument("--out", required=True)
    keys.add_argument("--count", type=int, default=DEFAULT_POOL_SIZE)
    args = parser.parse_args(argv)
    try:
        write_pool_keys_file(args.out, args.count)
    except (OSError, MemkvError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.count} namespaces {pool_namespace(0)}..{pool_namespace(args.count - 1)} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["NamespacePool", "ServerTarget", "from_url", "serve", "write_pool_keys_file"]
