"""Profile admin: the admin HTTP API of spec/openapi.yaml (MKV-ADM-001..008).

Each endpoint is checked for its answer and its effect (an invalidation through the API really
removes the blocks, as the target's client sees), every non-public endpoint for its keys (401
without or with a wrong key, 403 for a non-admin key or another namespace's admin key), and the
whole API with schemathesis against spec/openapi.yaml. Needs `Target.admin_url` and
`Target.credential`; the 503 of readiness needs `Target.launch` (a server at its connection
limit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memkv.blocks import BlockMeta
from memkv.conformance.requirements import SPEC_DIR
from memkv.conformance.support import Context, check, fail, kept, launch_or_skip, payload, put_ok, read
from memkv.conformance.timing import scaled

OPENAPI = SPEC_DIR / "openapi.yaml"
SCHEMATHESIS_CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance",
                       "negative_data_rejection", "ignored_auth")


def _url(memkv: Context) -> str:
    url = getattr(memkv.target, "admin_url", None)
    if not url:
        pytest.skip("the target offers no admin API URL (Target.admin_url)")
    return str(url).rstrip("/")


def _cred(memkv: Context, namespace: str, role: str) -> str:
    hook = getattr(memkv.target, "credential", None)
    cred = hook(namespace, role) if callable(hook) else None
    if cred is None:
        pytest.skip(f"the target offers no {role} key of a test namespace (Target.credential)")
    return str(cred)


def _http(url: str, token: str | None = None, method: str = "GET", body: Any = None
          ) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _json(requirement: str, what: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        fail(requirement, f"{what}: the answer is JSON", "JSON", body[:200])


def _error_shape(requirement: str, what: str, body: bytes) -> None:
    doc = _json(requirement, what, body)
    check(requirement, isinstance(doc, dict) and isinstance(doc.get("error"), dict)
          and {"code", "message"} <= set(doc["error"]), f"{what}: an error object {{error: {{code, message}}}}",
          "error object", str(doc)[:200])


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---- health and readiness (MKV-ADM-001, MKV-ADM-002) ---------------------------------------------------

@pytest.mark.requirement("MKV-ADM-001")
def test_health_answers_without_a_key(memkv: Context) -> None:
    url = _url(memkv)
    status, _, body = _http(url + "/v1/health")
    check("MKV-ADM-001", status in (200, 503), "GET /v1/health answers 200 or 503", "200", status)
    doc = _json("MKV-ADM-001", "health", body)
    state = doc.get("status") if isinstance(doc, dict) else None
    check("MKV-ADM-001", state in ("healthy", "degraded", "unhealthy"), "health status is one of the spec's",
          "healthy, degraded or unhealthy", state)
    check("MKV-ADM-001", (status == 503) == (state == "unhealthy"), "503 exactly when unhealthy",
          "200 for healthy/degraded", f"{status} {state}")
    check("MKV-ADM-001", state == "healthy", "a serving, uncrowded server is healthy", "healthy", state)
    check("MKV-ADM-001", isinstance(doc.get("checks"), dict), "health carries its checks", "an object",
          doc.get("checks"))


@pytest.mark.requirement("MKV-ADM-002")
def test_ready_while_accepting_clients(memkv: Context) -> None:
    url = _url(memkv)
    status, _, body = _http(url + "/v1/ready")
    doc = _json("MKV-ADM-002", "ready", body)
    check("MKV-ADM-002", status == 200 and isinstance(doc, dict) and doc.get("ready") is True,
          "GET /v1/ready while accepting clients", "200 {ready: true}", f"{status} {str(doc)[:200]}")
    check("MKV-ADM-002", isinstance(doc.get("reason"), str), "readiness gives a reason", "a string", doc.get("reason"))


@pytest.mark.requirement("MKV-ADM-002")
def test_not_ready_at_the_connection_limit(memkv: Context) -> None:
    hook = getattr(memkv.target, "launch", None)
    launched = hook(None, extra_args=["--max-connections", "1"]) if callable(hook) else None
    if launched is None:
        pytest.skip("the target cannot start a server at its connection limit (Target.launch); with a running "
                    "memkv server add launcher=memkv to the target URL")
    check("MKV-ADM-002", launched.started, "a server with --max-connections 1 starts", "started",
          launched.output[-500:])
    target = launched.target
    try:
        url = str(target.admin_url).rstrip("/")
        status, _, _ = _http(url + "/v1/ready")
        check("MKV-ADM-002", status == 200, "ready before the limit is reached", 200, status)
        t = target.connect(memkv.namespace("adm"))
        status, _, body = _http(url + "/v1/ready")
        doc = _json("MKV-ADM-002", "ready", body)
        check("MKV-ADM-002", status == 503 and isinstance(doc, dict) and doc.get("ready") is False,
              "GET /v1/ready while the connection limit is reached", "503 {ready: false}",
              f"{status} {str(doc)[:200]}")
        health_status, _, health = _http(url + "/v1/health")
        state = _json("MKV-ADM-001", "health", health).get("status")
        check("MKV-ADM-001", health_status == 200 and state == "degraded",
              "health at the connection limit is degraded (200)", "200 degraded", f"{health_status} {state}")
        t.close()
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline and _http(url + "/v1/ready")[0] != 200:
            time.sleep(0.1)
        check("MKV-ADM-002", _http(url + "/v1/ready")[0] == 200, "ready again once the connection closed", 200,
              "503")
    finally:
        target.close()


# ---- status (MKV-ADM-003) --------------------------------------------------------------------------------

@pytest.mark.requirement("MKV-ADM-003")
def test_status_reports_capacity_blocks_pins_leases_sessions_connections(memkv: Context) -> None:
    url = _url(memkv)
    ns, other = memkv.namespace("adm"), memkv.namespace("adm")
    t = memkv.transport(ns)
    o = memkv.transport(other)
    keys = [memkv.key() for _ in range(3)]
    sizes = (1000, 2000, 3000)
    for i, (key, size) in enumerate(zip(keys, sizes, strict=True)):
        put_ok(t, key, payload(i, size), "MKV-ADM-003")
    put_ok(o, memkv.key(), payload(9, 500), "MKV-ADM-003")
    session = t.open_session(3600.0, keys[:2])
    t.suspend(session.session_id, 3600.0)  # a suspended session pins its blocks (MKV-SES-004)
    lease = t.lookup([keys[2]], lease_ms=60_000).lease_id
    status, _, body = _http(url + "/v1/status", _cred(memkv, ns, "admin"))
    check("MKV-ADM-003", status == 200, "GET /v1/status with an admin key", 200, status)
    doc = _json("MKV-ADM-003", "status", body)
    cap = doc.get("capacity", {})
    check("MKV-ADM-003", all(_count(cap.get(f)) for f in ("raw_bytes", "used_bytes", "free_bytes")),
          "capacity: raw, used and free bytes", "non-negative integers", cap)
    check("MKV-ADM-003", cap["raw_bytes"] > 0 and cap["used_bytes"] + cap["free_bytes"] <= cap["raw_bytes"]
          and cap["used_bytes"] >= sum(sizes), "capacity adds up and counts the stored bytes",
          f"used >= {sum(sizes)}, used + free <= raw", cap)
    check("MKV-ADM-003", _count(doc.get("blocks")) and doc["blocks"] >= 3, "blocks", ">= 3", doc.get("blocks"))
    check("MKV-ADM-003", _count(doc.get("pinned_blocks")) and doc["pinned_blocks"] >= 2, "pinned blocks",
          ">= 2", doc.get("pinned_blocks"))
    check("MKV-ADM-003", _count(doc.get("leases")) and doc["leases"] >= 1, "leases", ">= 1", doc.get("leases"))
    sessions = doc.get("sessions")
    check("MKV-ADM-003", isinstance(sessions, dict) and sessions.get("suspended", 0) >= 1, "sessions by state",
          "suspended >= 1", sessions)
    conns = doc.get("connections", {})
    check("MKV-ADM-003", _count(conns.get("open")) and conns["open"] >= 2, "open connections", ">= 2", conns)
    spaces = doc.get("namespaces", {})
    mine = spaces.get(ns) if isinstance(spaces, dict) else None
    check("MKV-ADM-003", isinstance(mine, dict) and mine.get("blocks") == 3 and mine.get("bytes") == sum(sizes)
          and isinstance(mine.get("sessions"), dict) and mine["sessions"].get("suspended") == 1,
          "usage of the key's namespace", f"{{blocks: 3, bytes: {sum(sizes)}, sessions: {{suspended: 1}}}}", mine)
    check("MKV-ADM-007", other not in spaces, "status shows only the namespaces the key administers",
          f"no {other}", sorted(spaces)[:10])
    if lease is not None:
        t.release_lease(lease)
    t.close_session(session.session_id)


# ---- sessions (MKV-ADM-004) ------------------------------------------------------------------------------

@pytest.mark.requirement("MKV-ADM-004")
def test_sessions_are_listed_and_shown(memkv: Context) -> None:
    url = _url(memkv)
    ns = memkv.namespace("adm")
    token = _cred(memkv, ns, "admin")
    t = memkv.transport(ns)
    keys = [memkv.key() for _ in range(3)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(20 + i, 100), "MKV-ADM-004")
    sid = t.open_session(3600.0, keys).session_id
    other = t.open_session(3600.0, keys[:1]).session_id
    status, _, body = _http(f"{url}/v1/namespaces/{ns}/sessions", token)
    doc = _json("MKV-ADM-004", "session list", body)
    listed = {s.get("session_id") for s in doc.get("sessions", [])} if isinstance(doc, dict) else set()
    check("MKV-ADM-004", status == 200 and {sid, other} <= listed and doc.get("total") == 2,
          "the namespace's sessions are listed", f"200, total 2, {sid} and {other}", f"{status} {str(doc)[:300]}")
    status, _, body = _http(f"{url}/v1/namespaces/{ns}/sessions/{sid}", token)
    one = _json("MKV-ADM-004", "session", body)
    check("MKV-ADM-004", status == 200 and one.get("session_id") == sid and one.get("state") == "open"
          and one.get("keys") == [k.hex() for k in keys] and one.get("key_count") == 3,
          "one session is shown with its keys", "the session, open, its 3 keys in order", f"{status} {str(one)[:300]}")
    status, _, body = _http(f"{url}/v1/namespaces/{ns}/sessions/no-such-session-{memkv.rng.randrange(10**6)}", token)
    check("MKV-ADM-004", status == 404, "an unknown session", 404, status)
    _error_shape("MKV-ADM-004", "404 answer", body)
    t.close_session(sid)
    t.close_session(other)


# ---- invalidation (MKV-ADM-005) ----------------------------------------------------------------------------

@pytest.mark.requirement("MKV-ADM-005", "MKV-INV-001", "MKV-INV-002", "MKV-INV-003", "MKV-INV-004", "MKV-INV-005")
def test_invalidation_through_the_api_removes_the_blocks(memkv: Context) -> None:
    url = _url(memkv)
    ns, bystander = memkv.namespace("adm"), memkv.namespace("adm")
    token = _cred(memkv, ns, "admin")
    t = memkv.transport(ns)
    b = memkv.transport(bystander)
    fa, fb = bytes([0xA5] * 16), bytes([0x5B] * 16)
    root, mid, leaf, lone = (memkv.key() for _ in range(4))
    chain = {root: BlockMeta(fingerprint=fa), mid: BlockMeta(fingerprint=fa, parent=root),
             leaf: BlockMeta(fingerprint=fa, parent=mid), lone: BlockMeta(fingerprint=fa)}
    for i, (key, meta) in enumerate(chain.items()):
        put_ok(t, key, payload(30 + i, 256), "MKV-ADM-005", meta=meta)
    model_keys = [memkv.key() for _ in range(2)]
    for i, key in enumerate(model_keys):
        put_ok(t, key, payload(40 + i, 256), "MKV-ADM-005", meta=BlockMeta(fingerprint=fb))
    session_keys = [memkv.key() for _ in range(2)]
    for i, key in enumerate(session_keys):
        put_ok(t, key, payload(50 + i, 256), "MKV-ADM-005")
    sid = t.open_session(3600.0, session_keys).session_id
    put_ok(b, lone, payload(60, 256), "MKV-ADM-005")

    def invalidate(body: dict[str, Any], expected: int, requirement: str, gone: list[bytes], what: str) -> None:
        status, _, raw = _http(f"{url}/v1/namespaces/{ns}/invalidate", token, "POST", body)
        doc = _json("MKV-ADM-005", what, raw)
        check("MKV-ADM-005", status == 200 and isinstance(doc, dict) and doc.get("invalidated") == expected,
              f"POST invalidate {what}: answers the count removed", f"200 {{invalidated: {expected}}}",
              f"{status} {str(doc)[:200]}")
        present = t.exists(gone)
        check(requirement, not any(present), f"invalidate {what} through the admin API: the client no longer sees "
              "the blocks", "absent", f"{sum(present)} of {len(gone)} still present")

    invalidate({"keys": [lone.hex()]}, 1, "MKV-INV-001", [lone], "by keys")
    kept("MKV-ADM-005", b, lone, payload(60, 256), "another namespace keeps the same key")
    invalidate({"prefix": mid.hex()}, 2, "MKV-INV-002", [mid, leaf], "by prefix")
    kept("MKV-INV-002", t, root, payload(30, 256), "the prefix's parent stays")
    invalidate({"session_id": sid}, 2, "MKV-INV-003", session_keys, "by session")
    invalidate({"fingerprint": fb.hex()}, 2, "MKV-INV-004", model_keys, "by model fingerprint")
    kept("MKV-INV-004", t, root, payload(30, 256), "blocks of another model stay")
    invalidate({"all": True}, 1, "MKV-INV-005", [root], "the whole namespace")
    kept("MKV-ADM-005", b, lone, payload(60, 256), "other namespaces keep their blocks")
    status, _, raw = _http(f"{url}/v1/namespaces/{ns}/invalidate", token, "POST", {"keys": [], "all": True})
    check("MKV-ADM-005", status == 400, "an invalidation naming no or two selectors is refused", 400, status)
    _error_shape("MKV-ADM-005", "400 answer", raw)


# ---- metrics (MKV-ADM-006) ---------------------------------------------------------------------------------

def _families(text: str) -> dict[str, str]:
    """Metric family name -> type, from the # TYPE lines of Prometheus text."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE":
            found[parts[2]] = parts[3]
    return found


def _samples(text: str, family: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(family) and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in (family, family + "_total"):
                try:
                    total += float(line.rsplit(" ", 1)[-1])
                except ValueError:
                    continue
    return total


@pytest.mark.requirement("MKV-ADM-006")
def test_metrics_serve_prometheus_text_with_the_named_families(memkv: Context) -> None:
    url = _url(memkv)
    ns = memkv.namespace("adm")
    t = memkv.transport(ns)
    key = memkv.key()
    put_ok(t, key, payload(70, 4096), "MKV-ADM-006")
    check("MKV-ADM-006", read(t, key) is not None and read(t, memkv.key()) is None, "a hit and a miss", "", "")
    token = _cred(memkv, ns, "admin")
    for path in ("/metrics", "/v1/metrics"):
        status, headers, body = _http(url + path, token)
        check("MKV-ADM-006", status == 200, f"GET {path} with an admin key", 200, status)
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        check("MKV-ADM-006", ctype.startswith("text/plain"), f"{path} is Prometheus text", "text/plain", ctype)
    text = body.decode("utf-8", "replace")
    families = _families(text)
    check("MKV-ADM-006", bool(families), "metric families with # TYPE lines", "some", "none")
    wanted: dict[str, Callable[[str, str], bool]] = {
        "operations": lambda n, k: k == "counter" and ("operation" in n or "requests" in n),
        "bytes": lambda n, k: k == "counter" and "bytes" in n,
        "latency histogram": lambda n, k: k == "histogram",
        "hits": lambda n, k: "hit" in n,
        "misses": lambda n, k: "miss" in n,
        "evictions": lambda n, k: "evict" in n,
        "errors by code": lambda n, k: "error" in n,
        "connections": lambda n, k: "connection" in n and k == "gauge",
    }
    for concept, match in wanted.items():
        names = [n for n, kind in families.items() if match(n, kind)]
        check("MKV-ADM-006", bool(names), f"/metrics has a family for {concept}", concept, sorted(families)[:40])
    hits = [n for n in families if "hit" in n]
    misses = [n for n in families if "miss" in n]
    check("MKV-ADM-006", max(_samples(text, n) for n in hits) >= 1, "the hit counter counts the hit", ">= 1", 0)
    check("MKV-ADM-006", max(_samples(text, n) for n in misses) >= 1, "the miss counter counts the miss", ">= 1", 0)


# ---- keys (MKV-ADM-007) -------------------------------------------------------------------------------------

@pytest.mark.requirement("MKV-ADM-007")
def test_admin_calls_need_an_admin_key_of_the_namespace(memkv: Context) -> None:
    url = _url(memkv)
    ns, other = memkv.namespace("adm"), memkv.namespace("adm")
    t = memkv.transport(ns)
    key = memkv.key()
    put_ok(t, key, payload(80, 512), "MKV-ADM-007")
    sid = t.open_session(3600.0, [key]).session_id
    admin = _cred(memkv, ns, "admin")
    key_id = admin.partition(":")[0]
    tokens = {"no key": None, "a wrong secret": f"{key_id}:{'00' * 32}",
              "an unknown key": f"memkv-cf-nobody:{'11' * 32}", "a malformed token": "not-a-token"}
    endpoints: list[tuple[str, str, Any]] = [
        ("GET", "/v1/status", None), ("GET", "/metrics", None), ("GET", "/v1/metrics", None),
        ("GET", f"/v1/namespaces/{ns}/sessions", None), ("GET", f"/v1/namespaces/{ns}/sessions/{sid}", None),
        ("POST", f"/v1/namespaces/{ns}/invalidate", {"all": True})]
    for method, path, body in endpoints:
        for what, token in tokens.items():
            status, _, raw = _http(url + path, token, method, body)
            check("MKV-ADM-007", status == 401, f"{method} {path} with {what}", 401, status)
            _error_shape("MKV-ADM-007", f"{method} {path} 401", raw)
        for role in ("read", "write"):
            status, _, raw = _http(url + path, _cred(memkv, ns, role), method, body)
            check("MKV-ADM-007", status == 403, f"{method} {path} with a {role} key of the namespace", 403, status)
        if "/namespaces/" in path:
            status, _, raw = _http(url + path, _cred(memkv, other, "admin"), method, body)
            check("MKV-ADM-007", status == 403, f"{method} {path} with another namespace's admin key", 403, status)
            _error_shape("MKV-ADM-007", f"{method} {path} 403", raw)
    kept("MKV-ADM-007", t, key, payload(80, 512), "refused invalidations removed nothing")
    check("MKV-ADM-007", t.session_info(sid).state.value == "open", "the session is untouched", "open", "other")
    for path in ("/v1/health", "/v1/ready"):
        status, _, _ = _http(url + path)
        check("MKV-ADM-007", status == 200, f"GET {path} needs no key", 200, status)
    status, _, _ = _http(url + "/v1/status", admin)
    check("MKV-ADM-007", status == 200, "the admin key itself is accepted", 200, status)
    t.close_session(sid)


# ---- the OpenAPI description (MKV-ADM-008) -------------------------------------------------------------------

def _schemathesis() -> str | None:
    sibling = Path(sys.executable).with_name("schemathesis")
    if sibling.exists():
        return str(sibling)
    return shutil.which("schemathesis")


@pytest.mark.requirement("MKV-ADM-008")
def test_answers_conform_to_the_openapi_description(memkv: Context) -> None:
    url = _url(memkv)
    ns = memkv.namespace("adm")
    token = _cred(memkv, ns, "admin")
    cli = _schemathesis()
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    t = memkv.transport(ns)
    key = memkv.key()
    put_ok(t, key, payload(90, 128), "MKV-ADM-008")
    t.open_session(3600.0, [key])
    report = tempfile.mkdtemp(prefix="memkv-cf-schemathesis-")
    try:
        result = subprocess.run(
            [cli, "run", str(OPENAPI), "--url", url, "-H", f"Authorization: Bearer {token}",
             "--checks", ",".join(SCHEMATHESIS_CHECKS), "--max-examples", str(max(5, memkv.examples)),
             "--seed", str(memkv.seed), "--report-dir", report],
            capture_output=True, text=True, timeout=scaled(400), env=os.environ | {"NO_COLOR": "1"}, cwd=report)
    finally:
        shutil.rmtree(report, ignore_errors=True)
    if result.returncode != 0:
        out = result.stdout + result.stderr
        lines = [line for line in out.splitlines() if line.strip()]
        summary = "\n".join(lines[-60:])
        fail("MKV-ADM-008", "schemathesis found answers that do not conform to spec/openapi.yaml",
             f"exit 0 with checks {', '.join(SCHEMATHESIS_CHECKS)}", summary,
             f"schemathesis run spec/openapi.yaml --url {url} -H 'Authorization: Bearer <admin key>' --checks "
             f"{','.join(SCHEMATHESIS_CHECKS)} --max-examples {max(5, memkv.examples)} --seed {memkv.seed}")


@pytest.mark.requirement("MKV-ADM-030")
def test_the_admin_api_stays_on_loopback_when_the_data_port_listens_everywhere(memkv: Context) -> None:
    import urllib.parse

    launched = launch_or_skip(memkv, None, extra_args=["--listen", "0.0.0.0:0"])
    check("MKV-ADM-030", launched.started, "a server with --listen 0.0.0.0:0 starts", "started", launched.output[-500:])
    try:
        host = urllib.parse.urlsplit(str(launched.target.admin_url)).hostname
        check("MKV-ADM-030", host in ("127.0.0.1", "::1", "localhost"),
              "the admin API's address without --admin-listen", "loopback", host)
    finally:
        launched.target.close()


@pytest.mark.requirement("MKV-ADM-031")
def test_slow_admin_clients_of_one_address_leave_health_answering(memkv: Context) -> None:
    import socket
    import urllib.parse

    launched = launch_or_skip(memkv, None)
    check("MKV-ADM-031", launched.started, "a server starts", "started", launched.output[-500:])
    idle: list[socket.socket] = []
    try:
        parts = urllib.parse.urlsplit(str(launched.target.admin_url))
        address = (str(parts.hostname), int(parts.port or 80))
        if address[0] != "127.0.0.1":
            pytest.skip("the launched admin API is not on 127.0.0.1; two loopback source addresses are needed")
        idle = [socket.create_connection(address, timeout=5, source_address=("127.0.0.1", 0)) for _ in range(16)]
        time.sleep(0.3)
        with socket.create_connection(address, timeout=5, source_address=("127.0.0.2", 0)) as other:
            other.sendall(b"GET /v1/health HTTP/1.1\r\nHost: memkv\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := other.recv(4096):
                answer += chunk
        status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
        check("MKV-ADM-031", " 200 " in status_line,
              "GET /v1/health from another address while one address holds 16 idle admin connections",
              "200", status_line or "closed without an answer")
    finally:
        for sock in idle:
            sock.close()
        launched.target.close()
