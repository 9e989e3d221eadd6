"""Admin HTTP API of the server (spec/openapi.yaml, MKV-ADM-*): health, readiness, status,
sessions, invalidation and Prometheus metrics. Every call but health and readiness needs an
admin key: `Authorization: Bearer <key id>:<secret>`; an admin key covers its own namespace (and
sees no other in status and metrics), an operator key every namespace (MKV-ADM-009, MKV-ADM-010).
"""

from __future__ import annotations

import collections
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NoReturn

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import bounded_json
from ..errors import ErrorCode, MemkvError
from ..namespaces import is_namespace
from ..sessions import SessionInfo
from ..version import __version__
from ..wire.opcodes import Role
from .keyring import ApiKey

if TYPE_CHECKING:
    from .service import MemkvServer

log = logging.getLogger("memkv.admin")

SESSION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
HEX32_RE = re.compile(r"[0-9a-fA-F]{32}")
MAX_BODY = 64 * 1024
MAX_ADMIN_CONNECTIONS = 64
# One peer holds at most this many admin connections, so slow clients from one address cannot
# take every slot and /v1/health keeps answering for the others (MKV-ADM-031).
MAX_ADMIN_PER_PEER = 16
# Seconds a client may take to send its request line, headers or body (a silent client is cut).
ADMIN_IO_TIMEOUT_S = 10.0
MAX_INVALIDATE_KEYS = 256
HTTP_STATUS = {ErrorCode.NOT_FOUND: 404, ErrorCode.UNKNOWN_SESSION: 404, ErrorCode.SESSION_EXPIRED: 404,
               ErrorCode.UNAUTHENTICATED: 401, ErrorCode.PERMISSION_DENIED: 403, ErrorCode.UNAVAILABLE: 503}


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> _HttpError:
    return _HttpError(400, "INVALID_ARGUMENT", message)


def session_json(info: SessionInfo, with_keys: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"session_id": info.session_id, "state": info.state.value, "ttl_s": info.ttl_s,
                           "expires_at": info.expires_at, "parent_id": info.parent_id,
                           "fingerprint": info.fingerprint.hex(), "pinned": info.pinned,
                           "key_count": len(info.keys)}
    if with_keys:
        out["keys"] = [k.hex() for k in info.keys]
    return out


WIRE_MAGIC = b"MKVW"
WIRE_CLIENT_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n"
                      b"X-Memkv: this is the admin HTTP API of a memkv server, not its wire protocol\r\n\r\n")


class _Handler(BaseHTTPRequestHandler):
    timeout = ADMIN_IO_TIMEOUT_S
    server_version = f"memkv-admin/{__version__}"
    protocol_version = "HTTP/1.1"
    memkv: MemkvServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:  # here, in the request's thread, so that a slow client never holds up the accept loop
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.debug("admin TLS handshake with %s failed: %s", self.address_string(), exc)
                return
            super().handle()
            return
        # A memkv wire client sent to this port by mistake would wait for an answer to its HELLO
        # (HTTP waits for a line that never comes): tell it at once where it is.
        try:
            first = self.connection.recv(len(WIRE_MAGIC), socket.MSG_PEEK)
        except OSError:
            return
        if first == WIRE_MAGIC:
            self.wfile.write(WIRE_CLIENT_ANSWER)
            self.close_connection = True
            return
        super().handle()

    # ---- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, sort_keys=True).encode("utf-8"))

    def _error(self, err: _HttpError) -> None:
        if err.status == 401:
            self.send_response(401)
            body = json.dumps({"error": {"code": err.code, "message": err.message}}).encode()
            self.send_header("WWW-Authenticate", 'Bearer realm="memkv-admin"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"error": {"code": err.code, "message": err.message}}).encode("utf-8")
        self.send_response(err.status)
        if err.status == 405:
            self.send_header("Allow", getattr(self, "_allow", "GET"))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorize(self) -> ApiKey | None:
        """The admin key of this request (None in unauthenticated mode)."""
        ring = self.memkv.keyring
        if ring is None:
            return None
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _HttpError(401, "UNAUTHENTICATED", "an admin key is needed: Authorization: Bearer <id>:<secret>")
        key = ring.check_bearer(token.strip())
        if key is None:
            raise _HttpError(401, "UNAUTHENTICATED", "unknown key or wrong secret")
        if not key.operator and not key.grants(Role.ADMIN):
            raise _HttpError(403, "PERMISSION_DENIED", f"key {key.key_id} is not an admin key")
        return key

    def _namespace(self, key: ApiKey | None, raw: str) -> str:
        namespace = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
        if not is_namespace(namespace):
            raise _bad("namespace must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
        if key is not None and not key.administers(namespace):
            raise _HttpError(403, "PERMISSION_DENIED", f"key {key.key_id} does not administer {namespace}")
        return namespace

    def _session_id(self, raw: str) -> str:
        session_id = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
        if not SESSION_RE.fullmatch(session_id):
            raise _bad("session id must match ^[A-Za-z0-9_-]{1,64}$")
        return session_id

    def _read_body(self) -> None:
        """Read the whole body up front, so an early refusal never leaves bytes on a kept-alive connection."""
        self._raw_body: bytes | None = None
        self._body_error: _HttpError | None = None
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self._body_error = _bad("chunked bodies are not supported; send Content-Length")
            return
        try:
            if len(length_text) > 20:  # bounded before conversion (MKV-SEC-050)
                raise ValueError("Content-Length too long")
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            self._body_error = _bad("bad Content-Length")
            return
        if length < 0:
            self.close_connection = True
            self._body_error = _bad("bad Content-Length")
        elif length > MAX_BODY:
            self.close_connection = True
            self._body_error = _HttpError(413, "LIMIT_EXCEEDED", f"body must be at most {MAX_BODY} bytes")
        else:
            self._raw_body = self.rfile.read(length)

    def _body(self) -> Any:
        if self._body_error is not None:
            raise self._body_error
        if not self._raw_body:
            raise _bad("a JSON body is needed")
        try:
            return _JSON_DECODER.decode(self._raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise _bad("body is not valid JSON") from None

    # ---- routing --------------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        self._read_body()
        try:
            split = urllib.parse.urlsplit(self.path)
            parts = split.path.split("/")[1:]
            if method == "GET" and parts == ["v1", "health"]:
                return self._health()
            if method == "GET" and parts == ["v1", "ready"]:
                return self._ready()
            if method == "GET" and parts in (["metrics"], ["v1", "metrics"]):
                key = self._authorize()
                scope = None if key is None or key.operator else key.namespace
                return self._send(200, generate_latest(self.memkv.metrics.view(scope)), CONTENT_TYPE_LATEST)
            if method == "GET" and parts == ["v1", "status"]:
                return self._status(self._authorize())
            if len(parts) >= 4 and parts[:2] == ["v1", "namespaces"]:
                if method == "GET" and len(parts) == 4 and parts[3] == "sessions":
                    key = self._authorize()
                    return self._sessions(self._namespace(key, parts[2]), split.query)
                if method == "GET" and len(parts) == 5 and parts[3] == "sessions":
                    key = self._authorize()
                    namespace = self._namespace(key, parts[2])
                    return self._session(namespace, self._session_id(parts[4]))
                if method == "POST" and len(parts) == 4 and parts[3] == "invalidate":
                    key = self._authorize()
                    return self._invalidate(self._namespace(key, parts[2]))
            allowed = _allowed_methods(parts)
            if allowed:
                self._allow = allowed
                raise _HttpError(405, "UNSUPPORTED", f"{method} is not allowed here; use {allowed}")
            raise _HttpError(404, "NOT_FOUND", f"no such endpoint {split.path}")
        except _HttpError as err:
            self._error(err)
        except UnicodeDecodeError:
            self._error(_bad("path is not valid UTF-8"))
        except MemkvError as exc:
            status = HTTP_STATUS.get(exc.code, 400 if exc.code is not ErrorCode.INTERNAL else 500)
            self._error(_HttpError(status, exc.code.name, exc.message))
        except Exception as exc:
            log.exception("admin request failed")
            self._error(_HttpError(500, "INTERNAL", repr(exc)))

    def __getattr__(self, name: str) -> Any:
        # any other method (QUERY, FOO...) gets 405 or 404 rather than http.server's 501
        if name.startswith("do_"):
            return lambda: self._route(name[3:])
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_OPTIONS(self) -> None:
        self._route("OPTIONS")

    def do_TRACE(self) -> None:
        self._route("TRACE")

    def do_CONNECT(self) -> None:
        self._route("CONNECT")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # ---- endpoints ------------------------------------------------------------------------------
    def _health(self) -> None:
        status, checks = self.memkv.health()
        self._json(200 if status != "unhealthy" else 503, {"status": status, "checks": checks})

    def _ready(self) -> None:
        server = self.memkv
        if server.stopped.is_set() or server.draining.is_set():
            return self._json(503, {"ready": False, "reason": "shutting down"})
        if server.connection_count() >= server.config.max_connections:
            return self._json(503, {"ready": False, "reason": "connection limit reached"})
        self._json(200, {"ready": True, "reason": "accepting connections"})

    def _status(self, key: ApiKey | None) -> None:
        server = self.memkv
        stats = server.engine.stats()
        if key is None or key.operator:
            visible = set(stats["namespaces"]) | set(server.keyring.namespaces if server.keyring else [])
        else:
            visible = {key.namespace}
        namespaces: dict[str, Any] = {}
        for ns in sorted(visible):
            usage = stats["namespaces"].get(ns, {"blocks": 0, "bytes": 0})
            sessions: dict[str, int] = {}
            for info in server.engine.sessions(ns):
                sessions[info.state.value] = sessions.get(info.state.value, 0) + 1
            namespaces[ns] = {"blocks": usage["blocks"], "bytes": usage["bytes"], "sessions": sessions}
        host, port = server.address
        self._json(200, {
            "server": {"version": __version__, "uptime_s": time.time() - server.started_at,
                       "listen": f"{host}:{port}", "auth": server.keyring is not None,
                       "draining": server.draining.is_set(), "direct_io": bool(stats["direct_io"])},
            "capacity": {"raw_bytes": stats["capacity_bytes"], "used_bytes": stats["used_bytes"],
                         "free_bytes": stats["free_bytes"]},
            "blocks": stats["blocks"], "pinned_blocks": stats["pinned_blocks"], "leases": stats["leases"],
            "sessions": stats["sessions"],
            "connections": {"open": server.connection_count(), "max": server.config.max_connections},
            "namespaces": namespaces,
        })

    def _sessions(self, namespace: str, query: str) -> None:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        limit = 100
        if "limit" in params:
            text = params["limit"][-1]
            if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= 1000:
                raise _bad("limit must be an integer in 1..1000")
            limit = int(text)
        infos = self.memkv.engine.sessions(namespace)
        self._json(200, {"namespace": namespace, "total": len(infos),
                         "sessions": [session_json(i, False) for i in infos[:limit]]})

    def _session(self, namespace: str, session_id: str) -> None:
        self._json(200, session_json(self.memkv.engine.session_info(namespace, session_id), True))

    def _invalidate(self, namespace: str) -> None:
        body = self._body()
        if not isinstance(body, dict) or len(body) != 1:
            raise _bad("body is an object with exactly one of keys, prefix, session_id, fingerprint, all")
        (field, value), = body.items()
        engine = self.memkv.engine
        if field == "keys":
            if (not isinstance(value, list) or not 1 <= len(value) <= MAX_INVALIDATE_KEYS
                    or not all(isinstance(v, str) and HEX32_RE.fullmatch(v) for v in value)):
                raise _bad(f"keys is a list of 1..{MAX_INVALIDATE_KEYS} keys, 32 hex digits each")
            count = engine.invalidate_keys(namespace, [bytes.fromhex(v) for v in value])
        elif field in ("prefix", "fingerprint"):
            if not isinstance(value, str) or not HEX32_RE.fullmatch(value):
                raise _bad(f"{field} is 32 hex digits")
            raw = bytes.fromhex(value)
            count = (engine.invalidate_prefix(namespace, raw) if field == "prefix"
                     else engine.invalidate_model(namespace, raw))
        elif field == "session_id":
            if not isinstance(value, str) or not SESSION_RE.fullmatch(value):
                raise _bad("session_id must match ^[A-Za-z0-9_-]{1,64}$")
            count = engine.invalidate_session(namespace, value)
        elif field == "all":
            if value is not True:
                raise _bad("all must be true")
            count = engine.invalidate_namespace(namespace)
        else:
            raise _bad(f"unknown field {field!r}")
        self._json(200, {"namespace": namespace, "invalidated": count})


def _allowed_methods(parts: list[str]) -> str:
    if parts in (["v1", "health"], ["v1", "ready"], ["metrics"], ["v1", "metrics"], ["v1", "status"]):
        return "GET"
    if len(parts) in (4, 5) and parts[:2] == ["v1", "namespaces"] and parts[3] == "sessions":
        return "GET"
    if len(parts) == 4 and parts[:2] == ["v1", "namespaces"] and parts[3] == "invalidate":
        return "POST"
    return ""


def _refuse_json(reason: str) -> NoReturn:
    raise _bad(reason)


_JSON_DECODER = bounded_json.decoder(_refuse_json)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """At most MAX_ADMIN_CONNECTIONS handler threads, MAX_ADMIN_PER_PEER per peer; the rest are closed at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._held: collections.Counter[str] = collections.Counter()
        self._held_lock = threading.Lock()

    def _take(self, peer: str) -> bool:
        with self._held_lock:
            if sum(self._held.values()) >= MAX_ADMIN_CONNECTIONS or self._held[peer] >= MAX_ADMIN_PER_PEER:
                return False
            self._held[peer] += 1
            return True

    def _give_back(self, peer: str) -> None:
        with self._held_lock:
            self._held[peer] -= 1
            if self._held[peer] <= 0:
                del self._held[peer]

    def process_request(self, request: Any, client_address: Any) -> None:
        peer = str(client_address[0])
        if not self._take(peer):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_back(peer)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_back(str(client_address[0]))


class AdminServer:
    def __init__(self, server: MemkvServer, address: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        handler = type("MemkvAdminHandler", (_Handler,), {"memkv": server})
        self.httpd = _BoundedHTTPServer(address, handler)
        self.tls = tls is not None
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="memkv-admin", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
