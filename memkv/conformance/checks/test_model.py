"""Model-based checks: a Hypothesis state machine drives the target and the reference model.

Allowed nondeterminism is a set of allowed outcomes, never a skipped check: on a small-capacity
instance an unprotected block may disappear (eviction), and a put may get CAPACITY_EXCEEDED when
protected data fills the store; a protected (pinned or leased) block may never disappear.
Bytes are compared exactly. On failure the reproduction is the step list of the minimal example.

Expiry without a slow clock: an `expire_*` rule gives one session or lease a lifetime of
`SHORT_S` (2 ms) and waits that long after the target answered, so the expiry has certainly
passed on the target's clock (it set the expiry before answering) and the model knows the state
exactly; the walk then goes on with an expired session or lease, which later rules meet. Restart:
on a target that claims durable and can be restarted, the under-eviction machines stop and start
it through its `Target` hooks and compare every block, its metadata and every session with the
model before going on (MKV-DUR-001); leases end there (MKV-OPS-018).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from memkv.blocks import BlockMeta
from memkv.conformance.model import Model, ModelLease, ModelSession
from memkv.conformance.plugin import REGRESSION_SEED
from memkv.conformance.support import Context, RequirementFailure, fail, payload
from memkv.errors import ErrorCode, MemkvError
from memkv.keys import ROOT_PARENT
from memkv.sessions import SessionEvent, SessionState
from memkv.transport import PutItem, Transport

E = ErrorCode
NKEYS = 6
FINGERPRINTS = (bytes([0xA1] * 16), bytes([0xB2] * 16))
HOUR = 3600.0
SHORT_S = 0.002
RESTARTS = 2  # per example: each one reopens the store and reads everything back
SMALL_CAPACITY = 768 * 1024


def _key(i: int) -> bytes:
    return b"memkv-model-k" + bytes([0, 0, i])


def _index(key: bytes) -> int:
    return key[-1]


def _meta(i: int) -> BlockMeta:
    return BlockMeta(fingerprint=FINGERPRINTS[i % 2], parent=_key(i - 1) if i else ROOT_PARENT, token_count=16 * i)


class _Machine(RuleBasedStateMachine):
    ctx: Context
    sessions_on: bool
    small: bool
    crowded: bool  # the target had too little free space at the start to rule out evictions
    restarting: bool  # the target claims durable and the suite can restart it
    sizes: tuple[int, ...]

    def __init__(self) -> None:
        super().__init__()
        self.namespaces = [self.ctx.namespace(), self.ctx.namespace()]
        self.ts: list[Transport] = [self.ctx.transport(ns) for ns in self.namespaces]
        self.model = Model(2, prefix_from_absent_keys=self.ctx.holds_to("MKV-INV-008"))
        self.log: list[str] = ["a, b = target.connect(ns_a), target.connect(ns_b)"]
        self.lease_ms = min(60_000, self.ctx.limits.max_lease_ms)
        self.sids: list[str] = []
        self.lease_ids: list[str] = []
        self.capacity = self.ctx.caps.capacity_bytes
        self.restarts = 0

    @property
    def may_evict(self) -> bool:
        return self.small or self.crowded

    def teardown(self) -> None:
        """Empty and close this example's transports: a run of many examples must not hold a
        connection per example (a cluster of three shards reached the servers' connection limit)."""
        for t in self.ts:
            try:
                t.invalidate_namespace()
            except MemkvError:
                pass
            t.close()

    # ---- helpers ----------------------------------------------------------------------------
    def step(self, text: str) -> None:
        self.log.append(text)

    def fail(self, requirement: str, message: str, expected: object, actual: object) -> None:
        fail(requirement, message, expected, actual, "\n".join(self.log))

    def name(self, ns: int) -> str:
        return "ab"[ns]

    def absent_seen(self, ns: int, key: bytes, what: str) -> None:
        """The target shows `key` absent while the model holds it: eviction, or a failure."""
        protector = self.model.protected_by(ns, key)
        if protector is not None:
            self.fail(protector, f"{what}: a {'pinned' if protector == 'MKV-SES-004' else 'leased'} block disappeared",
                      "present", "absent")
        if not self.may_evict:
            self.fail("MKV-OPS-001", f"{what}: a stored block disappeared without capacity pressure", "present",
                      "absent")
        self.model.remove(ns, key, "evicted")

    def present_seen(self, ns: int, key: bytes, what: str) -> None:
        """The target shows `key` present while the model says it is absent."""
        reason = self.model.gone[ns].get(key)
        if reason is not None and reason != "evicted":
            self.fail(reason, f"{what}: the block is visible after it was removed ({reason})", "absent", "present")
        if self.model.present(1 - ns, key):
            self.fail("MKV-NS-001", f"{what}: a block of the other namespace is visible", "absent", "present")
        self.fail("MKV-OPS-001" if reason is None else "MKV-CAP-002", f"{what}: a block that was never stored here "
                  "(or was evicted) is visible", "absent", "present")

    def reconcile(self) -> None:
        for ns in (0, 1):
            keys = [_key(i) for i in range(NKEYS)]
            seen = self.ts[ns].exists(keys)
            for key, there in zip(keys, seen, strict=False):
                if there and not self.model.present(ns, key):
                    self.present_seen(ns, key, f"exists({self.name(ns)})")
                elif not there and self.model.present(ns, key):
                    self.absent_seen(ns, key, f"exists({self.name(ns)})")

    # ---- blocks -----------------------------------------------------------------------------
    @rule(ns=st.integers(0, 1), i=st.integers(0, NKEYS - 1), size=st.integers(0, 3), variant=st.integers(0, 1))
    def put(self, ns: int, i: int, size: int, variant: int) -> None:
        key, n = _key(i), self.sizes[size]
        data = payload(variant * 1000 + i * 10 + size, n)
        self.step(f"{self.name(ns)}.put([PutItem(k{i}, payload({variant * 1000 + i * 10 + size}, {n}), meta(k{i}))])")
        if self.small:
            self.reconcile()
        before = {k for k in self.model.blocks[ns]}
        res = self.ts[ns].put([PutItem(key, data, _meta(i))])[0]
        old = self.model.blocks[ns].get(key)
        want = self.model.put(ns, key, data, _meta(i))
        if res.status is want:
            return
        if res.status is E.CAPACITY_EXCEEDED and self.small and old is None:
            self.model.remove(ns, key, "refused")
            self.model.gone[ns].pop(key, None)
            # The unit a target allocates in is not declared; up to 1/12 of the small capacity
            # (the file target's 64 KiB of 832 KiB) is allowed for each protected block.
            granule = (self.capacity or 0) // 12
            if self.model.protected_bytes(granule) + max(n, granule) <= (self.capacity or 0) // 2:
                self.fail("MKV-CAP-002", "CAPACITY_EXCEEDED although most of the store is evictable", "OK",
                          "CAPACITY_EXCEEDED")
            now = self.ts[ns].exists(sorted(before))
            lost = [k for k, there in zip(sorted(before), now, strict=False) if not there]
            if lost:
                self.fail("MKV-CAP-003", "a put refused with CAPACITY_EXCEEDED evicted blocks", "nothing evicted",
                          f"{len(lost)} blocks gone")
            return
        if want is E.KEY_CONFLICT and res.ok:
            if self.small and self.model.protected_by(ns, key) is None:
                # the old block may have been evicted before this put: storing the new bytes is then
                # allowed, but answering OK while keeping the old ones is not
                buf = bytearray(n + 1)
                got = self.ts[ns].get_into([key], [buf])[0]
                if old is not None and got.ok and bytes(buf[: got.length]) == old.data:
                    self.fail("MKV-BLK-007", f"put of different bytes under stored k{i} answered OK, old bytes kept",
                              "KEY_CONFLICT", "OK")
                self.model.blocks[ns][key].data = data
                return
            if self.small:
                self.reconcile()  # protected blocks gone in the same put: evicted, then stored anew
            self.fail("MKV-BLK-007", f"put of different bytes under stored k{i}", "KEY_CONFLICT", "OK")
        if want is E.OK and res.status is E.KEY_CONFLICT:
            self.present_seen(ns, key, "put")
        if self.small and old is None and self.model.protected_bytes() + n > (self.capacity or 0) // 2:
            # protected data may fill the store: the only allowed refusal is CAPACITY_EXCEEDED
            self.fail("MKV-CAP-003", f"put of k{i} refused while protected data fills the store", "OK or "
                      "CAPACITY_EXCEEDED", f"{res.status.name} {res.message}")
        self.fail("MKV-OPS-001", f"put of k{i}", want.name, f"{res.status.name} {res.message}")

    @rule(ns=st.integers(0, 1), first=st.integers(0, NKEYS - 1), variant=st.integers(0, 1))
    def fill(self, ns: int, first: int, variant: int) -> None:
        """Weights the walk toward a full store: the largest size for every key from `first` on."""
        for i in range(first, NKEYS):
            self.put(ns, i, len(self.sizes) - 1, variant)

    @rule(ns=st.integers(0, 1), i=st.integers(0, NKEYS - 1))
    def get(self, ns: int, i: int) -> None:
        key = _key(i)
        self.step(f"{self.name(ns)}.get_into([k{i}], [bytearray(...)])")
        buf = bytearray(max(self.sizes) + 1)
        res = self.ts[ns].get_into([key], [buf])[0]
        block = self.model.blocks[ns].get(key)
        if res.status is E.NOT_FOUND:
            if block is not None:
                self.absent_seen(ns, key, f"get of k{i}")
            return
        if not res.ok:
            self.fail("MKV-OPS-001", f"get of k{i}", "OK or NOT_FOUND", f"{res.status.name} {res.message}")
        if block is None:
            self.present_seen(ns, key, f"get of k{i}")
            return
        got = bytes(buf[: res.length])
        if got != block.data:
            pairs = enumerate(zip(got, block.data, strict=False))
            diff = next((j for j, (x, y) in pairs if x != y), min(len(got), len(block.data)))
            self.fail("MKV-OPS-001", f"get of k{i} returned other bytes", f"{len(block.data)} bytes put",
                      f"{len(got)} bytes, first difference at offset {diff}")
        if res.meta is not None and res.meta != block.meta:
            self.fail("MKV-BLK-003", f"get of k{i} returned other metadata", block.meta, res.meta)

    def _stored_keys(self) -> list[tuple[int, int]]:
        return [(ns, i) for ns in (0, 1) for i in range(NKEYS) if self.model.present(ns, _key(i))]

    @precondition(lambda self: bool(self._stored_keys()))
    @rule(j=st.integers(0, 50))
    def get_stored(self, j: int) -> None:
        stored = self._stored_keys()
        ns, i = stored[j % len(stored)]
        self.get(ns, i)

    @rule(ns=st.integers(0, 1), start=st.integers(0, NKEYS - 1), n=st.integers(0, NKEYS), lease=st.booleans())
    def lookup(self, ns: int, start: int, n: int, lease: bool) -> None:
        self._lookup(ns, start, n, self.lease_ms if lease else 0)

    def _lookup(self, ns: int, start: int, n: int, lease_ms: int) -> str | None:
        """Look up k{start}.. (n keys) with a lease of `lease_ms`; the lease id, if one was given."""
        lease = lease_ms > 0
        keys = [_key(i) for i in range(start, min(NKEYS, start + n))]
        self.step(f"{self.name(ns)}.lookup(k{start}..k{start + len(keys) - 1}, lease_ms={lease_ms})")
        res = self.ts[ns].lookup(keys, lease_ms)
        want = self.model.lookup(ns, keys)
        if res.prefix_len != want:
            at = keys[min(res.prefix_len, want)]
            if self.ts[ns].exists([at])[0] == self.model.present(ns, at):
                # exists agrees with the model: the lookup answer itself is wrong
                self.fail("MKV-OPS-006", f"lookup prefix (exists agrees with the model about k{_index(at)})", want,
                          res.prefix_len)
        if res.prefix_len < want:
            self.absent_seen(ns, keys[res.prefix_len], "lookup")
            want = self.model.lookup(ns, keys)
        if res.prefix_len != want:
            if res.prefix_len > want:
                self.present_seen(ns, keys[want], "lookup")
            self.fail("MKV-OPS-006", "lookup prefix", want, res.prefix_len)
        if lease and want and res.lease_id is None:
            self.fail("MKV-OPS-007", "lookup with lease_ms > 0 over a present prefix", "a lease id", None)
        if res.lease_id is not None:
            self.model.leases[res.lease_id] = ModelLease(ns, tuple(keys[: res.prefix_len]))
            self.lease_ids.append(res.lease_id)
        return res.lease_id

    @rule(ns=st.integers(0, 1), start=st.integers(0, NKEYS - 1), n=st.integers(1, NKEYS))
    def expire_lease(self, ns: int, start: int, n: int) -> None:
        """A lease of SHORT_S, then a wait until it has expired: no longer protecting, and releasing
        it gets UNKNOWN_LEASE (MKV-OPS-008)."""
        lease_ms = max(1, round(SHORT_S * 1000))
        lease_id = self._lookup(ns, start, n, lease_ms)
        self._wait_out("lease")
        if lease_id is not None:
            self.model.expire_lease(lease_id)

    def _wait_out(self, what: str) -> None:
        """Wait SHORT_S after the target answered: the lifetime it set before answering has passed."""
        self.step(f"time.sleep({SHORT_S})  # the {what} expires")
        time.sleep(SHORT_S)

    @precondition(lambda self: bool(self.lease_ids))
    @rule(j=st.integers(0, 50))
    def release_lease(self, j: int) -> None:
        lease_id = self.lease_ids[j % len(self.lease_ids)]
        lease = self.model.leases[lease_id]
        self.step(f"{self.name(lease.ns)}.release_lease(lease{j % len(self.lease_ids)})")
        try:
            self.ts[lease.ns].release_lease(lease_id)
            code = E.OK
        except MemkvError as exc:
            code = exc.code
        want = E.OK if lease.live else E.UNKNOWN_LEASE
        if code is not want:
            self.fail(lease.ended_by or "MKV-OPS-008", "release_lease", want.name, code.name)
        lease.live = False

    @rule(ns=st.integers(0, 1), i=st.integers(0, NKEYS - 1))
    def delete(self, ns: int, i: int) -> None:
        key = _key(i)
        self.step(f"{self.name(ns)}.delete([k{i}])")
        res = self.ts[ns].delete([key])[0]
        if res.status is E.NOT_FOUND and self.model.present(ns, key):
            self.absent_seen(ns, key, "delete")
        elif res.ok and not self.model.present(ns, key):
            self.present_seen(ns, key, "delete")
        elif not res.ok and res.status is not E.NOT_FOUND:
            self.fail("MKV-OPS-009", f"delete of k{i}", "OK or NOT_FOUND", res.status.name)
        self.model.remove(ns, key, "MKV-OPS-009")

    @rule(ns=st.integers(0, 1), picks=st.lists(st.integers(0, NKEYS - 1), min_size=1, max_size=3))
    def invalidate_keys(self, ns: int, picks: list[int]) -> None:
        keys = list(dict.fromkeys(_key(i) for i in picks))
        self.step(f"{self.name(ns)}.invalidate_keys({[f'k{i}' for i in dict.fromkeys(picks)]})")
        count = self.ts[ns].invalidate_keys(keys)
        want = sum(self.model.remove(ns, k, "MKV-INV-001") for k in keys)
        if count > want or (count < want and not self.may_evict):
            self.fail("MKV-INV-001", "invalidate_keys count", want, count)

    @rule(ns=st.integers(0, 1), i=st.integers(0, NKEYS - 1))
    def invalidate_prefix(self, ns: int, i: int) -> None:
        self.step(f"{self.name(ns)}.invalidate_prefix(k{i})")
        if self.small:
            self.reconcile()
        count = self.ts[ns].invalidate_prefix(_key(i))
        want = sum(self.model.remove(ns, k, "MKV-INV-002") for k in self.model.descendants(ns, _key(i)))
        if count != want:
            self.fail("MKV-INV-002", f"invalidate_prefix(k{i}) count", want, count)

    @rule(ns=st.integers(0, 1), f=st.integers(0, 1))
    def invalidate_model(self, ns: int, f: int) -> None:
        self.step(f"{self.name(ns)}.invalidate_model(fingerprint{f})")
        count = self.ts[ns].invalidate_model(FINGERPRINTS[f])
        keys = [k for k, b in self.model.blocks[ns].items() if b.meta.fingerprint == FINGERPRINTS[f]]
        want = sum(self.model.remove(ns, k, "MKV-INV-004") for k in keys)
        if count > want or (count < want and not self.may_evict):
            self.fail("MKV-INV-004", "invalidate_model count", want, count)

    @rule(ns=st.integers(0, 1))
    def invalidate_namespace(self, ns: int) -> None:
        self.step(f"{self.name(ns)}.invalidate_namespace()")
        count = self.ts[ns].invalidate_namespace()
        want = self.model.invalidate_namespace(ns)
        if count > want or (count < want and not self.may_evict):
            self.fail("MKV-INV-005", "invalidate_namespace count", want, count)

    @invariant()
    def agrees_on_presence(self) -> None:
        self.reconcile()

    # ---- sessions ---------------------------------------------------------------------------
    def _session_call(self, sid: str, ns: int, event: SessionEvent, call: Any) -> tuple[ErrorCode, Any]:
        want = self.model.session_outcome(sid, ns, event)
        try:
            value, code = call(), E.OK
        except MemkvError as exc:
            value, code = None, exc.code
        if code is not want:
            req = {E.UNKNOWN_SESSION: "MKV-SES-007", E.INVALID_SESSION_STATE: "MKV-SES-001",
                   E.SESSION_EXPIRED: "MKV-SES-008"}.get(want, "MKV-SES-001")
            if code is E.UNKNOWN_SESSION and want is E.OK:
                req = "MKV-SES-002"
            elif code is E.SESSION_EXPIRED:
                req = "MKV-SES-008"  # expired before its TTL, or (after a restart) MKV-DUR-001 below
            self.fail(req, f"{event.value} of a session", want.name, code.name)
        return code, value

    def _check_info(self, sid: str, ns: int, info: Any, what: str) -> None:
        session = self.model.sessions.get(sid)
        if session is None or info is None:
            return
        expired = session.state is SessionState.EXPIRED  # a query reports the state (MKV-SES-008)
        if info.state is not session.state or (not expired and tuple(info.keys) != session.keys):
            self.fail("MKV-SES-001", f"session after {what}", (session.state.value, len(session.keys)),
                      (info.state.value, len(info.keys)))

    @precondition(lambda self: self.sessions_on)
    @rule(ns=st.integers(0, 1), n=st.integers(0, 3))
    def open_session(self, ns: int, n: int) -> None:
        self._open(ns, n, HOUR)

    def _open(self, ns: int, n: int, ttl: float) -> str | None:
        """Open a session on k0..k{n-1} with `ttl`; its id, when the target opened one."""
        keys = [_key(i) for i in range(n)]
        self.step(f"s{len(self.sids)} = {self.name(ns)}.open_session({ttl}, k0..k{n - 1})")
        if self.small:
            self.reconcile()
        try:
            info = self.ts[ns].open_session(ttl, keys)
            code = E.OK
        except MemkvError as exc:
            code, info = exc.code, None
        want = E.OK if all(self.model.present(ns, k) for k in keys) else E.NOT_FOUND
        if code is not want:
            self.fail("MKV-SES-003" if want is E.NOT_FOUND else "MKV-SES-002", "open_session", want.name, code.name)
        if info is not None:
            if info.session_id in self.model.sessions or info.state is not SessionState.OPEN:
                self.fail("MKV-SES-002", "open returns a new unique id, open", "new id", info.session_id)
            self.model.sessions[info.session_id] = ModelSession(info.session_id, ns, SessionState.OPEN, tuple(keys))
            self.sids.append(info.session_id)
            return info.session_id
        return None

    @precondition(lambda self: self.sessions_on)
    @rule(ns=st.integers(0, 1), n=st.integers(1, NKEYS), variant=st.integers(0, 1))
    def pin_chain(self, ns: int, n: int, variant: int) -> None:
        """Weights the walk toward pins under pressure: store a chain at the largest size, open a
        session on it and suspend it at once."""
        for i in range(n):
            self.put(ns, i, len(self.sizes) - 1, variant)
        opened = len(self.sids)
        self.open_session(ns, n)
        if len(self.sids) > opened:
            self.suspend(opened)

    def _pick(self, j: int) -> tuple[str, int]:
        sid = self.sids[j % len(self.sids)]
        session = self.model.sessions.get(sid)
        return sid, (session.ns if session is not None else j % 2)

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50), i=st.integers(0, NKEYS - 1))
    def append(self, j: int, i: int) -> None:
        sid, ns = self._pick(j)
        self.step(f"{self.name(ns)}.append(s{j % len(self.sids)}, [k{i}])")
        if self.small:
            self.reconcile()
        want = self.model.session_outcome(sid, ns, SessionEvent.APPEND)
        if want is E.OK and not self.model.present(ns, _key(i)):
            try:
                self.ts[ns].append(sid, [_key(i)])
                code = E.OK
            except MemkvError as exc:
                code = exc.code
            if code is not E.NOT_FOUND:
                self.fail("MKV-SES-003", "append of a key that is not stored", "NOT_FOUND", code.name)
            return
        code, info = self._session_call(sid, ns, SessionEvent.APPEND, lambda: self.ts[ns].append(sid, [_key(i)]))
        if code is E.OK:
            self.model.sessions[sid].keys += (_key(i),)
            self._check_info(sid, ns, info, "append")

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50))
    def suspend(self, j: int) -> None:
        self._suspend(j, HOUR)

    def _suspend(self, j: int, pause: float) -> bool:
        sid, ns = self._pick(j)
        self.step(f"{self.name(ns)}.suspend(s{j % len(self.sids)}, {pause})")
        code, info = self._session_call(sid, ns, SessionEvent.SUSPEND, lambda: self.ts[ns].suspend(sid, pause))
        if code is E.OK:
            self.model.apply(sid, SessionEvent.SUSPEND)
            self._check_info(sid, ns, info, "suspend")
        return code is E.OK

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50))
    def resume(self, j: int) -> None:
        sid, ns = self._pick(j)
        self.step(f"{self.name(ns)}.resume(s{j % len(self.sids)})")
        code, res = self._session_call(sid, ns, SessionEvent.RESUME, lambda: self.ts[ns].resume(sid))
        if code is E.OK:
            session = self.model.sessions[sid]
            want = self.model.valid_prefix(session)
            if tuple(res.valid_keys) != want:
                self.fail("MKV-SES-005", "resume returns the longest still-valid prefix", len(want),
                          len(res.valid_keys))
            self.model.apply(sid, SessionEvent.RESUME)
            session.keys = want
            self._check_info(sid, ns, res.session, "resume")

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50), n=st.integers(0, 3))
    def fork(self, j: int, n: int) -> None:
        self._fork(j, n, None)

    def _fork(self, j: int, n: int, ttl: float | None) -> str | None:
        sid, ns = self._pick(j)
        session = self.model.sessions.get(sid)
        n = min(n, len(session.keys)) if session is not None else 0
        self.step(f"s{len(self.sids)} = {self.name(ns)}.fork(s{j % len(self.sids)}, {n}, ttl_s={ttl})")
        code, info = self._session_call(sid, ns, SessionEvent.FORK, lambda: self.ts[ns].fork(sid, n, ttl))
        if code is E.OK and session is not None:
            if info.state is not SessionState.OPEN or tuple(info.keys) != session.keys[:n]:
                self.fail("MKV-SES-006", "fork shares the first n keys, open", n, len(info.keys))
            self.model.sessions[info.session_id] = ModelSession(info.session_id, ns, SessionState.OPEN,
                                                                session.keys[:n])
            self.sids.append(info.session_id)
            return str(info.session_id)
        return None

    @precondition(lambda self: self.sessions_on)
    @rule(how=st.sampled_from(["open", "suspend", "fork"]), j=st.integers(0, 50), ns=st.integers(0, 1),
          n=st.integers(0, 3))
    def expire_session(self, how: str, j: int, ns: int, n: int) -> None:
        """A session whose TTL (open, fork) or pause TTL (suspend) is SHORT_S, then a wait until it
        has expired: later operations on it get SESSION_EXPIRED, a query says expired, its pins go
        (MKV-SES-008)."""
        sid: str | None = None
        if how == "open" or not self.sids:
            sid = self._open(ns, n, SHORT_S)
        elif how == "suspend":
            sid = self._pick(j)[0] if self._suspend(j, SHORT_S) else None
        else:
            sid = self._fork(j, n, SHORT_S)
        self._wait_out("session")
        if sid is not None:
            self.model.expire(sid)

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50))
    def close_session(self, j: int) -> None:
        sid, ns = self._pick(j)
        self.step(f"{self.name(ns)}.close_session(s{j % len(self.sids)})")
        code, _ = self._session_call(sid, ns, SessionEvent.CLOSE, lambda: self.ts[ns].close_session(sid))
        if code is E.OK:
            self.model.apply(sid, SessionEvent.CLOSE)

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50), other=st.booleans())
    def session_info(self, j: int, other: bool) -> None:
        sid, ns = self._pick(j)
        asker = 1 - ns if other else ns
        self.step(f"{self.name(asker)}.session_info(s{j % len(self.sids)})")
        try:
            info, code = self.ts[asker].session_info(sid), E.OK
        except MemkvError as exc:
            info, code = None, exc.code
        want = E.OK if sid in self.model.sessions and asker == ns else E.UNKNOWN_SESSION
        if code is not want:
            self.fail("MKV-NS-002" if other else "MKV-SES-007", "session_info", want.name, code.name)
        self._check_info(sid, ns, info, "session_info")

    @precondition(lambda self: bool(self.sids))
    @rule(j=st.integers(0, 50))
    def invalidate_session(self, j: int) -> None:
        sid, ns = self._pick(j)
        self.step(f"{self.name(ns)}.invalidate_session(s{j % len(self.sids)})")
        if self.small:
            self.reconcile()
        try:
            count, code = self.ts[ns].invalidate_session(sid), E.OK
        except MemkvError as exc:
            count, code = 0, exc.code
        session = self.model.sessions.get(sid)
        want = E.OK if session is not None else E.UNKNOWN_SESSION
        if code is not want:
            self.fail("MKV-INV-003", "invalidate_session", want.name, code.name)
        if session is not None:
            n = sum(self.model.remove(ns, k, "MKV-INV-003") for k in set(session.keys))
            if count != n:
                self.fail("MKV-INV-003", "invalidate_session count", n, count)

    def _verify_all(self, when: str) -> None:
        """Read back every block the model holds (bytes, metadata) and every session's state."""
        self.step(f"# {when}: get, stat and session_info of everything")
        for ns in (0, 1):
            for key in list(self.model.blocks[ns]):
                self.get(ns, _index(key))
                block = self.model.blocks[ns].get(key)
                stat = self.ts[ns].stat([key])[0]
                if block is not None and stat is not None and stat.meta != block.meta:
                    self.fail("MKV-BLK-003", f"stat of k{_index(key)} returned other metadata", block.meta, stat.meta)
        for sid, session in list(self.model.sessions.items()):
            code, info = self._session_call_query(sid, session.ns)
            if code is E.OK:
                self._check_info(sid, session.ns, info, "session_info")

    def _session_call_query(self, sid: str, ns: int) -> tuple[ErrorCode, Any]:
        try:
            return E.OK, self.ts[ns].session_info(sid)
        except MemkvError as exc:
            self.fail("MKV-SES-007" if exc.code is E.UNKNOWN_SESSION else "MKV-SES-001", "session_info of a session "
                      "the model holds", "its state", exc.code.name)
            raise

    @precondition(lambda self: self.restarting and self.restarts < RESTARTS)
    @rule()
    def restart(self) -> None:
        """A clean restart through the target's hooks; everything the model holds must be there."""
        self.restarts += 1
        self._verify_all("before a restart")  # what is wrong already is not the restart's doing
        self.step("target.stop(); target.start(); a, b = target.connect(ns_a), target.connect(ns_b)")
        self.ctx.target.stop()
        self.ctx.target.start()
        self.ts = [self.ctx.transport(ns) for ns in self.namespaces]
        self.model.restart()
        for ns in (0, 1):
            for key, block in self.model.blocks[ns].items():
                buf = bytearray(len(block.data) + 1)
                res = self.ts[ns].get_into([key], [buf])[0]
                got = bytes(buf[: res.length]) if res.ok else None
                if got != block.data:
                    self.fail("MKV-DUR-001", f"k{_index(key)} after a clean restart", f"{len(block.data)} bytes put",
                              res.status.name if got is None else f"{len(got)} other bytes")
                stat = self.ts[ns].stat([key])[0]
                if stat is None or stat.meta != block.meta:
                    self.fail("MKV-DUR-001", f"metadata of k{_index(key)} after a clean restart", block.meta,
                              None if stat is None else stat.meta)
        for sid, session in self.model.sessions.items():
            try:
                info = self.ts[session.ns].session_info(sid)
            except MemkvError as exc:
                self.fail("MKV-DUR-001", "a session after a clean restart", session.state.value, exc.code.name)
                raise
            expired = session.state is SessionState.EXPIRED
            if info.state is not session.state or (not expired and tuple(info.keys) != session.keys):
                self.fail("MKV-DUR-001", "a session's state and chain after a clean restart",
                          (session.state.value, len(session.keys)), (info.state.value, len(info.keys)))

    @initialize()
    def start(self) -> None:
        for t in self.ts:
            t.invalidate_namespace()


def _free_bytes(ctx: Context) -> float:
    """The target-wide free bytes its stats report (MKV-OPS-019); infinite when it reports none."""
    free = ctx.transport().stats().get("free_bytes")
    return float(free) if isinstance(free, int) else float("inf")


def _run(memkv: Context, sessions_on: bool, small: bool) -> None:
    ctx = memkv.small(SMALL_CAPACITY) if small else memkv
    sizes = (1, 4097, 60_000, 150_000) if small else (1, 4096, 65_537, 300_000)
    # Evictions are a failure only where none can happen: a small target expects them, and so does
    # a target whose space other data fills (a store certified before, or in use).
    crowded = not small and _free_bytes(ctx) < 16 * 2 * NKEYS * max(sizes)
    restarting = small and "durable" in memkv.claimed and bool(getattr(ctx.target, "restartable", False))
    machine = type("ConformanceMachine", (_Machine,), {"ctx": ctx, "sessions_on": sessions_on, "small": small,
                                                        "crowded": crowded, "sizes": sizes,
                                                        "restarting": restarting})
    # A certification walks from the fixed regression seed and from its own seed (new paths each run).
    for run_seed in dict.fromkeys([REGRESSION_SEED, memkv.seed] if memkv.certify else [memkv.seed]):
        try:
            run_state_machine_as_test(seed(run_seed)(machine), settings=settings(
                max_examples=memkv.examples, stateful_step_count=memkv.steps, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False))
        except RequirementFailure as exc:
            exc.reproduction = f"seed {run_seed} (replay: --seed {run_seed})\n{exc.reproduction}"
            raise
    ctx.close_transports()


CORE_IDS = ("MKV-OPS-001", "MKV-OPS-006", "MKV-OPS-008", "MKV-OPS-009", "MKV-BLK-003", "MKV-BLK-007",
            "MKV-INV-001", "MKV-INV-002", "MKV-INV-004", "MKV-INV-005", "MKV-NS-001")


@pytest.mark.requirement(*CORE_IDS)
def test_model_core(memkv: Context) -> None:
    _run(memkv, sessions_on=False, small=False)


@pytest.mark.requirement(*CORE_IDS, "MKV-CAP-002", "MKV-CAP-003", "MKV-OPS-007", "MKV-OPS-018")
def test_model_core_under_eviction(memkv: Context) -> None:
    _run(memkv, sessions_on=False, small=True)


SESSION_IDS = ("MKV-SES-001", "MKV-SES-002", "MKV-SES-003", "MKV-SES-005", "MKV-SES-006", "MKV-SES-007",
               "MKV-SES-008", "MKV-INV-003", "MKV-NS-002")


@pytest.mark.requirement(*SESSION_IDS, *CORE_IDS)
def test_model_sessions(memkv: Context) -> None:
    _run(memkv, sessions_on=True, small=False)


@pytest.mark.requirement("MKV-SES-004", *SESSION_IDS, *CORE_IDS, "MKV-CAP-002", "MKV-CAP-003", "MKV-OPS-007",
                         "MKV-OPS-018", "MKV-DUR-001")
def test_model_sessions_under_eviction(memkv: Context) -> None:
    _run(memkv, sessions_on=True, small=True)
