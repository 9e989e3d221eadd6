"""A request and an answer frame for every opcode, signed with derived keys (spec/vectors/frames.json).

The `handshake` vector fixes the inputs of the key derivation (MKV-WIRE-011) and its output;
every frame after the HELLO request is signed with the derived key of its direction. The
arguments are sample values that conform to spec/operations.yaml (a test checks that).
"""

from __future__ import annotations

from typing import Any

from ..blocks import BlockMeta
from ..checksum import payload_checksum
from ..errors import ErrorCode
from ..transport import BlockInfo, GetResult, ItemResult
from . import messages as msg
from . import nixl_leases as leases
from .frames import CLIENT_TO_SERVER, FLAG_RESPONSE, SERVER_TO_CLIENT, Header, connection_key, encode_frame
from .opcodes import Opcode

# Nonces hold the separator byte 0x7c on purpose: the derivation takes them as raw fixed-size fields.
CLIENT_NONCE = bytes(range(0x70, 0x80))
SERVER_NONCE = bytes(range(0x7C, 0x8C))
NAMESPACE = "team-a"
KEY_ID = "a-writer"
KEY_1 = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY_2 = bytes.fromhex("ffeeddccbbaa99887766554433221100")
FINGERPRINT = bytes.fromhex("928a146a75f731e9d06e40e611f6cd40")
PAYLOAD = b"memkv block payload \x00\x01\x02"
SESSION = {"session_id": "6f1c2a9e0b7d4e3f8a5b1c2d3e4f5a6b", "state": "open", "ttl_s": 600.0,
           "expires_at": 1767226200.5, "parent_id": None, "fingerprint": FINGERPRINT.hex()}
Side = tuple[dict[str, Any], bytes, int, bytes]  # args, items, item count, payload
NONE: Side = ({}, b"", 0, b"")


def derivation_material(namespace: str = NAMESPACE, key_id: str = KEY_ID, direction: bytes = CLIENT_TO_SERVER
                        ) -> bytes:
    return b"|".join([b"memkv-wire-1", direction, CLIENT_NONCE, SERVER_NONCE, namespace.encode(), key_id.encode()])


def _keys(*keys: bytes) -> tuple[bytes, int]:
    return msg.pack_keys(keys), len(keys)


def _session_answer() -> Side:
    items, count = _keys(KEY_1, KEY_2)
    return SESSION, items, count, b""


def _samples() -> dict[Opcode, tuple[Side | None, Side]]:
    meta = BlockMeta(dtype="bf16", token_count=16)
    two, two_n = _keys(KEY_1, KEY_2)
    ok = msg.pack_results([ItemResult(ErrorCode.OK, ""), ItemResult(ErrorCode.NOT_FOUND, "no block")])
    put_items = msg.pack_put_item(KEY_1, len(PAYLOAD), payload_checksum(PAYLOAD), meta.encode())
    get_answer = msg.pack_get_results([GetResult(ErrorCode.OK, "", len(PAYLOAD), payload_checksum(PAYLOAD), meta),
                                       GetResult(ErrorCode.NOT_FOUND, "no block")])
    nixl_get_answer = msg.pack_get_results([GetResult(ErrorCode.OK, "", len(PAYLOAD), payload_checksum(PAYLOAD),
                                                      meta)])
    limits = {"max_meta": 16842752, "max_payload": 268435456, "max_items": 256}
    hello_req = {"namespace": NAMESPACE, "key_id": KEY_ID, "client_nonce": CLIENT_NONCE.hex(),
                 "timestamp_ms": 1767225600000, "client": "memkv-py/0.1.0"}
    hello_ans = {"server_nonce": SERVER_NONCE.hex(), "version": "1.2", "auth": True, "role": "write",
                 "namespace": NAMESPACE, "limits": limits, "idle_timeout_s": 300.0, "server": "memkv/0.1.0",
                 "spec_version": "1.2"}
    caps = {"backend": "tcp", "profiles": ["core", "secure", "sessions", "shared"],
            "limits": {"key_size": 16, "min_block_size": 1, "max_block_size": 67108864, "max_batch": 256,
                       "max_user_meta": 1024, "max_lease_ms": 600000, "max_session_blocks": 1000000},
            "spec_version": "1.2", "capacity_bytes": 1073741824, "flush_window_s": 1.0, "wire_limits": limits,
            "shard_group": ["10.0.0.5:9900", "10.0.0.5:9902"]}  # one shard of two (MKV-CLU-060)
    stats = {"namespace": NAMESPACE, "blocks": 2, "bytes": 46, "sessions": {"open": 1},
             "capacity_bytes": 1073741824, "used_bytes": 2097152, "free_bytes": 1071644672}
    nixl_desc = msg.pack_nixl_desc(KEY_1, 0x7F0000001000, 4096, 0, 0)
    nixl_put = msg.pack_nixl_put_item(KEY_1, 0x7F0000001000, len(PAYLOAD), 0, 0, payload_checksum(PAYLOAD),
                                      meta.encode())
    agent = {"agent": "memkv-client-1"}
    grant = leases.pack_alloc_answer([ItemResult(ErrorCode.OK, "")],
                                     [leases.Grant(7, 0x7F0000200000, 0, 0, 26000, 1048576)])
    count = ({"count": 2}, b"", 0, b"")
    sid = {"session_id": SESSION["session_id"]}
    return {
        Opcode.HELLO: ((hello_req, b"", 0, b""), (hello_ans, b"", 0, b"")),
        Opcode.PUT: (({}, put_items, 1, PAYLOAD), ({}, ok[:4], 1, b"")),
        Opcode.GET: (({}, msg.pack_get_item(KEY_1, 4096) + msg.pack_get_item(KEY_2, 4096), 2, b""),
                     ({}, get_answer, 2, PAYLOAD)),
        Opcode.STAT: (({}, two, two_n, b""),
                      ({}, msg.pack_stat_results([BlockInfo(KEY_1, len(PAYLOAD), payload_checksum(PAYLOAD),
                                                                meta), None]), 2, b"")),
        Opcode.EXISTS: (({}, two, two_n, b""), ({}, msg.pack_flags([True, False]), 2, b"")),
        Opcode.LOOKUP: (({"lease_ms": 5000}, two, two_n, b""),
                        ({"prefix_len": 1, "lease_id": "9b2f4c6d8e0a1b3c5d7e9f1a2b3c4d5e",
                          "lease_expires_at": 1767225605.25}, b"", 0, b"")),
        Opcode.RELEASE_LEASE: (({"lease_id": "9b2f4c6d8e0a1b3c5d7e9f1a2b3c4d5e"}, b"", 0, b""), NONE),
        Opcode.DELETE: (({}, two, two_n, b""), ({}, ok, 2, b"")),
        # the children of KEY_1 greater than KEY_1 (bytes order): KEY_2, and no more (next null)
        Opcode.CHILDREN: (({"after": KEY_1.hex()}, *_keys(KEY_1), b""), ({"next": None}, *_keys(KEY_2), b"")),
        Opcode.SESSION_OPEN: (({"ttl_s": 600.0, "fingerprint": FINGERPRINT.hex()} | sid | {"foreign": True}, two,
                               two_n, b""), _session_answer()),  # the 1.2 arguments of MKV-WIRE-052/053
        Opcode.SESSION_APPEND: ((sid | {"foreign": True}, *_keys(KEY_2), b""), _session_answer()),
        Opcode.SESSION_SUSPEND: ((sid | {"pause_ttl_s": 3600.0}, b"", 0, b""), _session_answer()),
        Opcode.SESSION_RESUME: ((sid | {"prefix_len": 2}, b"", 0, b""), _session_answer()),  # MKV-WIRE-054
        Opcode.SESSION_FORK: ((sid | {"prefix_len": 1, "ttl_s": None,
                                      "new_session_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"}, b"", 0, b""),
                              _session_answer()),
        Opcode.SESSION_CLOSE: ((sid, b"", 0, b""), _session_answer()),
        Opcode.SESSION_INFO: ((sid, b"", 0, b""), _session_answer()),
        Opcode.INVALIDATE_KEYS: (({}, two, two_n, b""), count),
        Opcode.INVALIDATE_PREFIX: (({"key": KEY_1.hex()}, b"", 0, b""), count),
        Opcode.INVALIDATE_SESSION: ((sid, b"", 0, b""), count),
        Opcode.INVALIDATE_MODEL: (({"fingerprint": FINGERPRINT.hex()}, b"", 0, b""), count),
        Opcode.INVALIDATE_NAMESPACE: (NONE, count),
        Opcode.CAPABILITIES: (NONE, (caps, b"", 0, b"")),
        Opcode.STATS: (NONE, (stats, b"", 0, b"")),
        Opcode.PING: (NONE, NONE),
        Opcode.GOODBYE: (NONE, NONE),
        Opcode.NIXL_HELLO: (({"agent": "memkv-client-1", "epoch": 1}, msg.pack_blob(b"opaque NIXL agent metadata"),
                             1, b""),
                            ({"agent": "memkv-server", "epoch": 1, "chunk": 1048576, "staging_bytes": 268435456,
                              "hugepages": False, "put_path": "write"}, b"", 0, b"")),
        Opcode.NIXL_PUT: ((agent, nixl_put, 1, b""), ({}, ok[:4], 1, b"")),
        Opcode.NIXL_GET: ((agent, nixl_desc, 1, b""), ({}, nixl_get_answer, 1, b"")),
        Opcode.NIXL_ALLOC: ((agent, put_items, 1, b""), ({}, grant, 1, b"")),
        Opcode.NIXL_COMMIT: ((agent, leases.pack_commit_item(7, leases.STORE), 1, b""), ({}, ok[:4], 1, b"")),
        Opcode.NIXL_SERVER_AGENT: ((agent, b"", 0, b""),
                                   ({"agent": "memkv-server"}, msg.pack_blob(b"opaque NIXL agent metadata"), 1,
                                    b"")),
        Opcode.NIXL_CREDIT: ((agent, leases.pack_credit_item(4 * 1048576), 1, b""), ({}, grant, 1, b"")),
        Opcode.NIXL_STORE: ((agent, leases.pack_store_item(7, 1, KEY_1, len(PAYLOAD), payload_checksum(PAYLOAD),
                                                           meta.encode()), 1, b""), ({}, ok[:4], 1, b"")),
        Opcode.ERROR: (None, (msg.error_args(ErrorCode.NOT_FOUND, "no session 6f1c"), b"", 0, b"")),
    }


def operation_vectors(secret: bytes) -> dict[str, Any]:
    """The handshake vector and one request/answer pair per opcode."""
    c2s = connection_key(secret, CLIENT_TO_SERVER, CLIENT_NONCE, SERVER_NONCE, NAMESPACE, KEY_ID)
    s2c = connection_key(secret, SERVER_TO_CLIENT, CLIENT_NONCE, SERVER_NONCE, NAMESPACE, KEY_ID)
    handshake = {"client_nonce": CLIENT_NONCE.hex(), "server_nonce": SERVER_NONCE.hex(), "namespace": NAMESPACE,
                 "key_id": KEY_ID, "material_c2s_hex": derivation_material().hex(),
                 "material_s2c_hex": derivation_material(direction=SERVER_TO_CLIENT).hex(),
                 "key_c2s": c2s.hex(), "key_s2c": s2c.hex()}
    frames = []
    for request_id, (opcode, (request, answer)) in enumerate(_samples().items()):
        entry: dict[str, Any] = {"opcode": opcode.name, "code": int(opcode)}
        if request is not None:
            args, items, count, payload = request
            key = secret if opcode is Opcode.HELLO else c2s
            frame = encode_frame(Header(opcode, request_id), msg.encode_meta(args, items, count), payload, key)
            entry["request"] = {"signed_with": "secret" if opcode is Opcode.HELLO else "key_c2s", "args": args,
                                "item_count": count, "frame_hex": frame.hex()}
        args, items, count, payload = answer
        status = int(ErrorCode.NOT_FOUND) if opcode is Opcode.ERROR else 0
        header = Header(opcode, request_id, flags=FLAG_RESPONSE, status=status)
        entry["answer"] = {"signed_with": "key_s2c", "args": args, "item_count": count,
                           "frame_hex": encode_frame(header, msg.encode_meta(args, items, count), payload, s2c).hex()}
        frames.append(entry)
    return {"handshake": handshake, "operations": frames}
