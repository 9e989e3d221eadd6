"""The memkv server: one storage engine, a TCP listener with a thread per connection, admin HTTP."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import Any

from ..errors import ErrorCode, InvalidArgument, Unavailable
from ..stats import namespace_stats
from ..store.engine import StorageEngine
from ..transport import Capabilities
from ..wire import messages as msg
from ..wire.frames import FLAG_RESPONSE, Header
from ..wire.opcodes import Opcode
from .config import ServerConfig
from .connection import BufferBudget, BufferPool, Connection
from .keyring import KeyRing
from .metrics import ServerMetrics
from .nixl_agent import NixlGate

log = logging.getLogger("memkv.server")

SERVER_PROFILES = frozenset({"core", "sessions", "shared", "wire"})

INSECURE_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! memkv serve: AUTHENTICATION IS OFF (--insecure-no-auth).                   !!
!! Any client that reaches {address:<30} can read, write and     !!
!! delete every namespace. Use this for local development only.               !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


class MemkvServer:
    def __init__(self, config: ServerConfig, keyring: KeyRing | None = None) -> None:
        if keyring is None and not config.insecure_no_auth:
            if not config.keys_file:
                raise InvalidArgument("a server needs a keys file (--keys) or, for local development only, "
                                      "--insecure-no-auth")
            keyring = KeyRing.load(config.keys_file)
        if config.insecure_no_auth:
            keyring = None
        if not config.data_dir:
            raise InvalidArgument("a server needs a data directory (--data)")
        self.config = config
        self.keyring = keyring
        self.nixl = NixlGate(self, config.nixl, config.nixl_staging)  # checks the mode before the store opens
        self.engine = StorageEngine(config.data_dir, capacity=config.capacity, device_path=config.device,
                                    unit=config.unit, flush_interval_s=config.flush_interval_s,
                                    format_device=config.format_device)
        if keyring is not None:
            self.engine.quotas = keyring.quotas
        self.metrics = ServerMetrics(self.engine.stats)
        self.budget = BufferBudget(config.buffer_memory)
        self.pool = BufferPool(min(config.buffer_memory // 4, 256 * 1024 * 1024))
        self.draining = threading.Event()
        self.stopped = threading.Event()
        self.started_at = time.time()
        self._conns: dict[Connection, threading.Thread] = {}
        self._lock = threading.Lock()
        self._nonces: dict[bytes, float] = {}
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.admin: Any = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            host, port = self.config.listen_address()
            listener = socket.create_server((host, port), backlog=512, reuse_port=False)
            listener.settimeout(0.2)
            self._listener = listener
            self.nixl.start()  # --nixl on: the agent and its staging pool now, or fail
            admin_address = self.config.admin_address()
            if admin_address is not None:
                from .admin import AdminServer

                self.admin = AdminServer(self, admin_address)
                self.admin.start()
        except BaseException:
            self.engine.close()
            raise
        self._accept_thread = threading.Thread(target=self._accept_loop, name="memkv-accept", daemon=True)
        self._accept_thread.start()
        if self.keyring is None:
            banner = INSECURE_BANNER.format(address=f"{self.address[0]}:{self.address[1]}")
            log.warning("authentication is OFF (--insecure-no-auth): local development only")
            print(banner, file=sys.stderr, flush=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return None if self.admin is None else self.admin.address  # type: ignore[no-any-return]

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.draining.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.draining.is_set():
                    break
                time.sleep(0.05)
                continue
            with self._lock:
                full = len(self._conns) >= self.config.max_connections
                if not full:
                    conn = Connection(self, sock, peer)
                    thread = threading.Thread(target=self._run_connection, args=(conn,),
                                              name=f"memkv-conn-{peer}", daemon=True)
                    self._conns[conn] = thread
            if full:
                self.metrics.connections_refused.inc()
                self._refuse(sock)
                continue
            thread.start()

    def _refuse(self, sock: socket.socket) -> None:
        try:
            meta = msg.encode_meta(msg.error_args(ErrorCode.UNAVAILABLE, "connection limit reached; retry later"))
            header = Header(Opcode.ERROR, 0, len(meta), 0, FLAG_RESPONSE, int(ErrorCode.UNAVAILABLE))
            sock.settimeout(1.0)
            sock.sendall(header.pack() + meta)
        except OSError:
            pass
        finally:
            sock.close()

    def _run_connection(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
            with self._lock:
                self._conns.pop(conn, None)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def remember_nonce(self, nonce: bytes) -> bool:
        """False when this HELLO nonce was seen inside the replay window (MKV-WIRE-012)."""
        now = time.monotonic()
        window = 2 * self.config.hello_window_s
        with self._lock:
            if len(self._nonces) > 10_000:
                self._nonces = {n: t for n, t in self._nonces.items() if now - t < window}
            if nonce in self._nonces and now - self._nonces[nonce] < window:
                return False
            self._nonces[nonce] = now
            return True

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (new ones get UNAVAILABLE), flush, close."""
        if self.stopped.is_set():
            return
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        log.info("shutting down: draining %d connections", self.connection_count())
        self.draining.set()
        if self._accept_thread is not None:
            self._accept_thread.join()
        if self._listener is not None:
            self._listener.close()
        deadline = time.monotonic() + grace
        while self.connection_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            leftovers = list(self._conns.items())
        for conn, _ in leftovers:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in leftovers:
            thread.join(timeout=2.0)
        self.nixl.close()
        try:
            self.engine.close()  # flushes payload and index (MKV-DUR-002)
        finally:
            if self.admin is not None:
                self.admin.stop()
            self.stopped.set()
            log.info("memkv server stopped")

    def wait(self) -> None:
        self.stopped.wait()

    # ---- views for clients and the admin API ----------------------------------------------------
    def capabilities(self) -> Capabilities:
        profiles = set(SERVER_PROFILES)
        if self.keyring is not None:
            profiles.add("secure")
        if self.admin is not None:
            profiles.add("admin")
        if self.nixl.mode == "on":  # started with its agent and staging pool, or the server failed to start
            profiles.add("nixl")
        return Capabilities("tcp", frozenset(profiles), self.engine.limits,
                            capacity_bytes=self.engine.allocator.total_bytes,
                            flush_window_s=self.config.flush_interval_s)

    def namespace_stats(self, namespace: str) -> dict[str, Any]:
        return namespace_stats(self.engine, namespace)

    def health(self) -> tuple[str, dict[str, Any]]:
        checks: dict[str, Any] = {"engine_open": not self.stopped.is_set(), "accepting": not self.draining.is_set(),
                                  "connections": self.connection_count(),
                                  "max_connections": self.config.max_connections}
        if self.stopped.is_set():
            return "unhealthy", checks
        try:
            stats = self.engine.stats()
        except Exception:
            return "unhealthy", checks
        checks["free_bytes"] = stats["free_bytes"]
        if self.draining.is_set() or checks["connections"] >= self.config.max_connections:
            return "degraded", checks
        return "healthy", checks


def raise_if_draining(server: MemkvServer) -> None:
    if server.draining.is_set():
        raise Unavailable("server is shutting down")
