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
from .access_log import AccessLog
from .config import ServerConfig
from .connection import BufferBudget, BufferPool, Connection
from .keyring import KeyRing
from .metrics import ServerMetrics
from .nixl_service import NixlGate

log = logging.getLogger("memkv.server")

SERVER_PROFILES = frozenset({"core", "sessions", "shared", "wire"})

INSECURE_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! memkv serve: AUTHENTICATION IS OFF (--insecure-no-auth).                   !!
!! Any client that reaches {address:<30} can read, write and     !!
!! delete every namespace. Use this for local development only.               !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def _bind(what: str, address: tuple[str, int]) -> socket.socket:
    try:
        listener = socket.create_server(address, backlog=512, reuse_port=False)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {address[0]}:{address[1]} ({what}): {exc.strerror or exc}") from None
    listener.settimeout(0.2)
    return listener


def _bind_admin(server: MemkvServer, address: tuple[str, int]) -> Any:
    from .admin import AdminServer

    config = server.config
    tls = None
    if config.admin_tls_cert or config.admin_tls_key:
        from .tls import server_context

        if not (config.admin_tls_cert and config.admin_tls_key):
            raise InvalidArgument("admin TLS needs both a certificate (--admin-tls-cert) and its key (--admin-tls-key)")
        tls = server_context(config.admin_tls_cert, config.admin_tls_key)
    try:
        return AdminServer(server, address, tls)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {address[0]}:{address[1]} (admin API, --admin-listen): "
                          f"{exc.strerror or exc}") from None


def _bind_s3(address: tuple[str, int]) -> Any:
    try:
        from .s3.endpoint import S3Endpoint
    except ImportError as exc:
        raise InvalidArgument(f"the S3 endpoint (--s3-listen) needs `pip install memkv[s3]` ({exc})") from None
    try:
        return S3Endpoint(address)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {address[0]}:{address[1]} (S3 endpoint, --s3-listen): "
                          f"{exc.strerror or exc}") from None


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
        self.admin: Any = None
        self.s3: Any = None
        self.access_log = AccessLog(config.access_log, config.access_log_max_bytes) if config.access_log else None
        # Ports first: a busy port must not cost a preallocated store (MKV-CAP-031).
        self._listener: socket.socket | None = _bind("wire protocol", config.listen_address())
        try:
            admin_address = config.admin_address()
            if admin_address is not None:
                self.admin = _bind_admin(self, admin_address)
            s3_address = config.s3_address()
            if s3_address is not None:
                self.s3 = _bind_s3(s3_address)
            self.engine = StorageEngine(config.data_dir, capacity=config.capacity, device_path=config.device,
                                        unit=config.unit, flush_interval_s=config.flush_interval_s,
                                        format_device=config.format_device)
            if keyring is not None:
                self.engine.quotas = keyring.quotas
        except BaseException:
            self._close_ports()
            raise
        self.metrics = ServerMetrics(self.engine.stats)
        self.budget = BufferBudget(config.buffer_memory)
        self.pool = BufferPool(min(config.buffer_memory // 4, 256 * 1024 * 1024))
        self.draining = threading.Event()
        self.stopped = threading.Event()
        self.started_at = time.time()
        self._conns: dict[Connection, threading.Thread] = {}
        self._lock = threading.Lock()
        self._nonces: dict[bytes, float] = {}
        self._accept_thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.nixl.start()  # --nixl on: the agent and its staging pool now, or fail
            if self.admin is not None:
                self.admin.start()
            if self.s3 is not None:
                self.s3.start(self)
        except BaseException:
            self.engine.close()
            self._close_ports()
            raise
        self._accept_thread = threading.Thread(target=self._accept_loop, name="memkv-accept", daemon=True)
        self._accept_thread.start()
        if self.keyring is None:
            banner = INSECURE_BANNER.format(address=f"{self.address[0]}:{self.address[1]}")
            log.warning("authentication is OFF (--insecure-no-auth): local development only")
            print(banner, file=sys.stderr, flush=True)

    def _close_ports(self) -> None:
        """Release the ports of a server that never started serving."""
        if self._listener is not None:
            self._listener.close()
        if self.admin is not None:
            self.admin.httpd.server_close()
        if self.s3 is not None:
            self.s3.close_port()

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
                full = self._over_budget(str(peer[0]))
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

    def _over_budget(self, host: str) -> bool:
        """Whether one more connection from `host` is refused (caller holds the lock, MKV-SEC-051)."""
        config = self.config
        if len(self._conns) >= config.max_connections:
            return True
        pending = [c for c in self._conns if not c.authenticated]
        if len(pending) >= config.max_unauthenticated:
            return True
        if sum(1 for c in pending if str(c.peer[0]) == host) >= config.max_unauthenticated_per_peer:
            return True
        per_peer = config.max_connections_per_peer
        return per_peer > 0 and sum(1 for c in self._conns if str(c.peer[0]) == host) >= per_peer

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
        if self.s3 is not None:
            self.s3.stop()  # before the engine closes
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
            if self.access_log is not None:
                self.access_log.close()
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
                            flush_window_s=self.config.flush_interval_s, shard_group=self.config.shard_group)

    def namespace_stats(self, namespace: str) -> dict[str, Any]:
        return namespace_stats(self.engine, namespace)

    def health(self) -> tuple[str, dict[str, Any]]:
        checks: dict[str, Any] = {"engine_open": not self.stopped.is_set(), "accepting": not self.draining.is_set(),
                                  "connections": self.connection_count(),
                                  "max_connections": self.config.max_connections}
        if self.stopped.is_set():
            return "unhealthy", checks
        if self.engine.failure is not None:  # fail-stop (MKV-DUR-009): say why
            checks["storage"] = self.engine.failure
            return "unhealthy", checks
        try:
            stats = self.engine.stats()
        except Exception:
            return "unhealthy", checks
        checks["free_bytes"] = stats["free_bytes"]
        if self.draining.is_set() or checks["connections"] >= self.config.max_connections:
            return "degraded", checks
        return "healthy", checks

