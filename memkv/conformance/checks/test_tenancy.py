"""Tenancy of the admin API: operator keys and namespace-scoped status and metrics (MKV-ADM-009,
MKV-ADM-010). Needs `Target.admin_url`, `Target.credential` (roles admin and operator) and
`Target.wire_address`."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from memkv.conformance.support import Context, check, payload, put_ok
from memkv.conformance.wire_peer import Peer


def _hook(memkv: Context, name: str, *args: Any) -> Any:
    hook = getattr(memkv.target, name, None)
    value = (hook(*args) if callable(hook) else hook) if hook is not None else None
    if value is None:
        pytest.skip(f"the target does not offer Target.{name}{'(' + ', '.join(map(str, args)) + ')' if args else ''}")
    return value


def _get(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _two_tenants(memkv: Context) -> tuple[str, str]:
    """Two namespaces, each holding one block (so that each appears in status and metrics)."""
    a, b = memkv.namespace("ten"), memkv.namespace("ten")
    for ns, seed in ((a, 1), (b, 2)):
        put_ok(memkv.transport(ns), memkv.key(), payload(seed, 1000), "MKV-ADM-010")
    return a, b


def _namespaces_in_metrics(text: str) -> set[str]:
    return set(re.findall(r'namespace="([^"]+)"', text))


def _status_namespaces(url: str, token: str) -> tuple[int, set[str]]:
    """The HTTP status of /v1/status with this key, and the namespaces it lists."""
    status, body = _get(f"{url}/v1/status", token)
    return status, set(json.loads(body).get("namespaces", {})) if status == 200 else set()


@pytest.mark.requirement("MKV-ADM-010")
def test_a_namespace_admin_sees_only_its_namespace(memkv: Context) -> None:
    url = str(_hook(memkv, "admin_url")).rstrip("/")
    a, b = _two_tenants(memkv)
    token = str(_hook(memkv, "credential", a, "admin"))
    status, listed = _status_namespaces(url, token)
    check("MKV-ADM-010", status == 200 and listed == {a}, "/v1/status lists only the key's namespace", [a],
          sorted(listed) if status == 200 else status)
    for path in ("/metrics", "/v1/metrics"):
        status, body = _get(f"{url}{path}", token)
        named = _namespaces_in_metrics(body.decode("utf-8", "replace"))
        check("MKV-ADM-010", status == 200 and named == {a}, f"{path} names only the key's namespace", [a],
              sorted(named) if status == 200 else status)
        check("MKV-ADM-010", b not in body.decode("utf-8", "replace"), f"{path} never mentions {b}", "absent",
              "present")


@pytest.mark.requirement("MKV-ADM-009", "MKV-ADM-010")
def test_an_operator_key_administers_every_namespace_and_nothing_on_the_wire(memkv: Context) -> None:
    url = str(_hook(memkv, "admin_url")).rstrip("/")
    a, b = _two_tenants(memkv)
    operator = str(_hook(memkv, "credential", a, "operator"))
    status, listed = _status_namespaces(url, operator)
    check("MKV-ADM-009", status == 200 and {a, b} <= listed, "an operator's /v1/status lists every namespace",
          sorted({a, b}), sorted(listed) if status == 200 else status)
    status, body = _get(f"{url}/metrics", operator)
    named = _namespaces_in_metrics(body.decode("utf-8", "replace"))
    check("MKV-ADM-010", status == 200 and {a, b} <= named, "an operator's /metrics has every namespace",
          sorted({a, b}), sorted(named) if status == 200 else status)
    for ns in (a, b):
        status, body = _get(f"{url}/v1/namespaces/{ns}/sessions", operator)
        check("MKV-ADM-009", status == 200, f"an operator lists the sessions of {ns}", 200, status)
    status, body = _get(f"{url}/v1/namespaces/{b}/invalidate", operator, "POST", {"all": True})
    check("MKV-ADM-009", status == 200 and json.loads(body).get("invalidated") == 1,
          "an operator invalidates another namespace", "200, 1 block", f"{status} {body[:120]!r}")
    admin_a = str(_hook(memkv, "credential", a, "admin"))
    status, _ = _get(f"{url}/v1/namespaces/{b}/sessions", admin_a)
    check("MKV-ADM-009", status == 403, "a namespace admin key does not administer another namespace", 403, status)
    with Peer(_hook(memkv, "wire_address")) as peer:
        answer = peer.hello(a, operator)
        check("MKV-ADM-009", answer.error == "UNAUTHENTICATED", "an operator key grants nothing on the wire",
              "UNAUTHENTICATED", answer.error or "accepted")
