"""`memkv admin status|sessions|session|invalidate|health|metrics`: client of the admin HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import ErrorCode as _Code
from ..errors import InvalidArgument, MemkvError, Unauthenticated, Unavailable, error_for
from ..server.tls import client_context
from ..units import format_size
from .main import Subparsers

DEFAULT_ADMIN_URL = "http://127.0.0.1:9901"
KEY_HINT = "give an admin key as --key-file FILE (holding '<key id>:<secret>') or in $MEMKV_ADMIN_KEY"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("admin", help="query and manage a running memkv server",
                              description="Client of the memkv admin HTTP API (spec/openapi.yaml).")
    p.add_argument("--url", default=os.environ.get("MEMKV_ADMIN_URL", DEFAULT_ADMIN_URL),
                   help=f"admin endpoint (default $MEMKV_ADMIN_URL or {DEFAULT_ADMIN_URL})")
    p.add_argument("--key-file", help="file holding '<key id>:<secret>' of an admin key (default $MEMKV_ADMIN_KEY)")
    p.add_argument("--ca-file", default=os.environ.get("MEMKV_ADMIN_CA"),
                   help="CA certificate (PEM) that signed an https:// admin endpoint's certificate "
                        "(default $MEMKV_ADMIN_CA, else the system's trust store)")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the server to answer (a server that is still starting)")
    sub = p.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    sub.add_parser("health", help="health (no key needed)")
    sub.add_parser("status", help="capacity, blocks, sessions, connections, namespace usage")
    sub.add_parser("metrics", help="Prometheus metrics text")
    s = sub.add_parser("sessions", help="list the sessions of a namespace")
    s.add_argument("namespace")
    s.add_argument("--limit", type=int, default=100)
    s = sub.add_parser("session", help="show one session with its keys")
    s.add_argument("namespace")
    s.add_argument("session_id")
    s = sub.add_parser("invalidate", help="invalidate blocks of a namespace")
    s.add_argument("namespace")
    group = s.add_mutually_exclusive_group(required=True)
    group.add_argument("--keys", nargs="+", metavar="HEX", help="block keys (32 hex digits each)")
    group.add_argument("--prefix", metavar="HEX", help="a key and every block chained after it")
    group.add_argument("--session", dest="session_id", help="every block of a session's chain")
    group.add_argument("--model", dest="fingerprint", metavar="HEX", help="every block of a model fingerprint")
    group.add_argument("--all", action="store_true", help="every block, session and lease of the namespace")
    s = sub.add_parser("cluster", help="the shards of a cluster: nodes, state, bytes (over the wire protocol)")
    s.add_argument("cluster_url", help="memkv+tcp://H1:P1,H2:P2 or memkv+etcd://HOST:PORT/CLUSTER")
    s.add_argument("--namespace", default="default", help="namespace whose blocks and bytes are counted")
    return p


def _token(args: argparse.Namespace) -> str | None:
    from ..credentials import checked_credential

    if args.key_file:
        with open(args.key_file, encoding="utf-8") as handle:
            return checked_credential(handle.read().strip(), f"--key-file {args.key_file}")
    from_environment = os.environ.get("MEMKV_ADMIN_KEY")
    return checked_credential(from_environment, "MEMKV_ADMIN_KEY") if from_environment else None


def request(url: str, path: str, token: str | None, body: Any = None, raw: bool = False,
            context: ssl.SSLContext | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            err = json.loads(payload)["error"]
            code = _Code[err["code"]] if err["code"] in _Code.__members__ else _Code.INTERNAL
            if code is _Code.OK:
                code = _Code.INTERNAL
            hint = f"; {KEY_HINT}" if exc.code == 401 else ""
            raise error_for(code, f"HTTP {exc.code}: {err['message']}{hint}") from None
        except (ValueError, KeyError, TypeError):
            if exc.code == 401:
                raise Unauthenticated(f"admin key missing or wrong; {KEY_HINT}") from None
            if exc.code == 503:
                return json.loads(payload)
            raise MemkvError(f"HTTP {exc.code}: {payload[:200]!r}") from None
    except urllib.error.URLError as exc:
        raise Unavailable(f"cannot reach {url}: {exc.reason}") from None
    except ConnectionError as exc:  # a server that is still starting or already stopping
        raise Unavailable(f"cannot reach {url}: {exc}") from None
    return payload.decode("utf-8") if raw else json.loads(payload)


def wait_until_up(url: str, seconds: float, context: ssl.SSLContext | None = None) -> None:
    """Poll /v1/health until the admin API answers; Unavailable (with the last reason) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            request(url, "/v1/health", None, context=context)
            return
        except Unavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    token = _token(args)
    if args.admin_command == "cluster":
        from .admin_cluster import show_cluster

        return show_cluster(args.cluster_url, args.namespace, token, args.json)
    context = client_context(args.ca_file) if args.url.startswith("https:") else None
    if args.wait > 0:
        wait_until_up(args.url, args.wait, context)

    def call(path: str, token: str | None, body: Any = None, raw: bool = False) -> Any:
        return request(args.url, path, token, body, raw, context)

    action = args.admin_command
    if action == "health":
        out = call("/v1/health", None)
    elif action == "metrics":
        sys.stdout.write(call("/metrics", token, raw=True))
        return 0
    elif action == "status":
        out = call("/v1/status", token)
    elif action == "sessions":
        ns = urllib.parse.quote(args.namespace, safe="")
        out = call(f"/v1/namespaces/{ns}/sessions?limit={args.limit}", token)
    elif action == "session":
        ns, sid = urllib.parse.quote(args.namespace, safe=""), urllib.parse.quote(args.session_id, safe="")
        out = call(f"/v1/namespaces/{ns}/sessions/{sid}", token)
    elif action == "invalidate":
        ns = urllib.parse.quote(args.namespace, safe="")
        body: dict[str, Any]
        if args.keys:
            body = {"keys": args.keys}
        elif args.prefix:
            body = {"prefix": args.prefix}
        elif args.session_id:
            body = {"session_id": args.session_id}
        elif args.fingerprint:
            body = {"fingerprint": args.fingerprint}
        else:
            body = {"all": True}
        out = call(f"/v1/namespaces/{ns}/invalidate", token, body)
    else:
        raise InvalidArgument(f"unknown admin action {action}")
    if args.json or action not in ("status", "sessions", "invalidate", "health"):
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if action == "invalidate":
        print(f"invalidated {out['invalidated']} blocks in {out['namespace']}")
    elif action == "health":
        print(f"{out['status']}: " + ", ".join(f"{name} {state}" for name, state in sorted(out["checks"].items())))
    elif action == "status":
        cap = out["capacity"]
        print(f"server   memkv {out['server']['version']} on {out['server']['listen']}, "
              f"auth {'on' if out['server']['auth'] else 'OFF'}, up {out['server']['uptime_s']:.0f} s")
        print(f"capacity {format_size(cap['raw_bytes'])} raw, {format_size(cap['used_bytes'])} used, "
              f"{format_size(cap['free_bytes'])} free")
        print(f"blocks   {out['blocks']} ({out['pinned_blocks']} pinned), leases {out['leases']}, "
              f"sessions {out['sessions']}")
        print(f"clients  {out['connections']['open']} of {out['connections']['max']} connections")
        for ns, usage in sorted(out["namespaces"].items()):
            print(f"  {ns:<24} {usage['blocks']:>8} blocks {format_size(usage['bytes']):>10}  {usage['sessions']}")
    else:
        print(f"{out['total']} sessions in {out['namespace']}")
        for s in out["sessions"]:
            print(f"  {s['session_id']}  {s['state']:<9} {s['key_count']:>6} keys  parent {s['parent_id'] or '-'}")
    return 0
