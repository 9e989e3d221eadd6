"""The S3 endpoint of memkv serve against boto3 and raw HTTP (spec/s3.md, MKV-S3-*)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h11")
pytest.importorskip("awscrt")
boto3 = pytest.importorskip("boto3")
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from helpers_s3 import S3Server, start  # noqa: E402

from memkv import connect  # noqa: E402
from memkv.checksum import payload_checksum  # noqa: E402
from memkv.keys import key_from_sequence_hash  # noqa: E402
from memkv.server.config import ServerConfig  # noqa: E402
from memkv.server.s3 import endpoint as s3_endpoint  # noqa: E402
from memkv.transport import PutItem  # noqa: E402

MiB = 1024 * 1024
ZERO_FINGERPRINT = bytes(16)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    yield from start(tmp_path)


@pytest.fixture
def open_s3(tmp_path: Path) -> Iterator[S3Server]:
    yield from start(tmp_path, authenticated=False)


def _read_to_end(sock: Any) -> bytes:
    answer = b""
    while piece := sock.recv(65536):
        answer += piece
    return answer


def _code(caught: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = caught.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


# ---- endpoint and operations ---------------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-001")
def test_the_endpoint_is_off_unless_configured() -> None:
    assert ServerConfig().s3_address() is None
    assert ServerConfig(s3_listen="off").s3_address() is None
    assert ServerConfig(s3_listen="127.0.0.1:9400").s3_address() == ("127.0.0.1", 9400)


@pytest.mark.requirement("MKV-S3-003", "MKV-S3-040", "MKV-S3-042", "MKV-S3-034")
def test_put_get_head_delete_round_trip(s3: S3Server) -> None:
    client = s3.client()
    data = os.urandom(3 * MiB + 17)
    put = client.put_object(Bucket="team-a", Key="12345", Body=data)
    assert put["ETag"] == f'"{payload_checksum(data):016x}"'
    got = client.get_object(Bucket="team-a", Key="12345")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data) and got["AcceptRanges"] == "bytes"
    assert got["ContentType"] == "application/octet-stream" and got["ETag"] == put["ETag"]
    head = client.head_object(Bucket="team-a", Key="12345")
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
    assert client.head_bucket(Bucket="team-a")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.delete_object(Bucket="team-a", Key="12345")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket="team-a", Key="12345")
    assert _code(caught) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket="team-a", Key="12345")
    assert _code(caught)[0] == 404
    # deleting what is not there is still 204
    assert client.delete_object(Bucket="team-a", Key="12345")["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.requirement("MKV-S3-003")
def test_other_operations_are_not_implemented_and_change_nothing(s3: S3Server) -> None:
    client = s3.client()
    client.put_object(Bucket="team-a", Key="1", Body=b"one")
    for call in (lambda: client.list_objects_v2(Bucket="team-a"),
                 lambda: client.copy_object(Bucket="team-a", Key="2", CopySource="team-a/1"),
                 lambda: client.create_multipart_upload(Bucket="team-a", Key="3"),
                 lambda: client.delete_objects(Bucket="team-a", Delete={"Objects": [{"Key": "1"}]})):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught) == (501, "NotImplemented")
    assert client.get_object(Bucket="team-a", Key="1")["Body"].read() == b"one"
    with pytest.raises(ClientError):
        client.head_object(Bucket="team-a", Key="2")


@pytest.mark.requirement("MKV-S3-001", "MKV-S3-002")
def test_bucket_names_follow_the_namespace_rule(open_s3: S3Server) -> None:
    status, _, body = open_s3.raw("GET", "/bad%20name/1")
    assert status == 400 and b"<Code>InvalidBucketName</Code>" in body
    status, _, body = open_s3.raw("GET", "/")
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body


# ---- names and the native path -----------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-010", "MKV-S3-002")
def test_a_kvbm_sequence_hash_object_is_the_native_block(s3: S3Server) -> None:
    """KVBM names an object by its SequenceHash; a native client reads it by key_from_sequence_hash."""
    sequence_hash = 0xF00DFACE12345678
    data = os.urandom(2 * MiB)
    s3.client().put_object(Bucket="team-a", Key=str(sequence_hash), Body=data)
    with connect(s3.tcp_url, "team-a", key=s3.creds["a-writer"]) as native:
        assert native.get([key_from_sequence_hash(ZERO_FINGERPRINT, sequence_hash)]) == [data]
        other = os.urandom(MiB)
        raw_key = os.urandom(16)
        [result] = native.put([PutItem(raw_key, other)])
        assert result.ok
        [result] = native.put([PutItem(key_from_sequence_hash(ZERO_FINGERPRINT, 7), b"seven")])
        assert result.ok
    assert s3.client().get_object(Bucket="team-a", Key=raw_key.hex())["Body"].read() == other
    assert s3.client().get_object(Bucket="team-a", Key="7")["Body"].read() == b"seven"
    # another namespace does not see it (bucket = namespace)
    with pytest.raises(ClientError) as caught:
        s3.client("b-writer").get_object(Bucket="team-b", Key=str(sequence_hash))
    assert _code(caught) == (404, "NoSuchKey")


@pytest.mark.requirement("MKV-S3-010")
@pytest.mark.parametrize("name", ["01", "18446744073709551616", "ABCDEF0123456789ABCDEF0123456789", "a/b", "x"])
def test_other_object_names_are_refused(s3: S3Server, name: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.client().put_object(Bucket="team-a", Key=name, Body=b"x")
    assert _code(caught) == (400, "InvalidArgument")


# ---- authentication --------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-020")
def test_a_wrong_secret_or_unknown_key_is_refused(s3: S3Server) -> None:
    with pytest.raises(ClientError) as caught:
        s3.client(secret="00" * 32).put_object(Bucket="team-a", Key="1", Body=b"x")
    assert _code(caught) == (403, "SignatureDoesNotMatch")
    with pytest.raises(ClientError) as caught:
        s3.client("nobody").put_object(Bucket="team-a", Key="1", Body=b"x")
    assert _code(caught) == (403, "InvalidAccessKeyId")
    with pytest.raises(ClientError):
        s3.client().head_object(Bucket="team-a", Key="1")  # nothing was stored


@pytest.mark.requirement("MKV-S3-020", "MKV-S3-003")
def test_unsigned_requests_and_presigned_urls_are_refused(s3: S3Server) -> None:
    status, _, body = s3.raw("GET", "/team-a/1")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": "team-a", "Key": "1"})
    status, _, body = s3.raw("GET", url[len(s3.endpoint):])
    assert status == 501 and b"<Code>NotImplemented</Code>" in body


def _signed_headers(s3: S3Server, method: str, path: str, body: bytes,
                    when: datetime.datetime | None = None) -> dict[str, str]:
    """Headers of a request that botocore signed with key a-writer, dated `when` (default: now)."""
    import botocore.auth

    kid, secret = s3.s3_credentials("a-writer")
    request = AWSRequest(method=method, url=f"{s3.endpoint}{path}", data=body)
    clock = botocore.auth.get_current_datetime
    try:
        if when is not None:
            botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)
        S3SigV4Auth(Credentials(kid, secret), "s3", "us-east-1").add_auth(request)
    finally:
        botocore.auth.get_current_datetime = clock
    return dict(request.headers.items())


@pytest.mark.requirement("MKV-S3-020")
def test_a_request_dated_too_far_from_the_clock_is_refused(s3: S3Server) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert s3.raw("PUT", "/team-a/5", b"five", _signed_headers(s3, "PUT", "/team-a/5", b"five", now))[0] == 200
    old = _signed_headers(s3, "PUT", "/team-a/6", b"six", now - datetime.timedelta(minutes=20))
    status, _, body = s3.raw("PUT", "/team-a/6", b"six", old)
    assert status == 403 and b"<Code>RequestTimeTooSkewed</Code>" in body


@pytest.mark.requirement("MKV-S3-020")
def test_a_body_changed_after_signing_is_refused(s3: S3Server) -> None:
    headers = _signed_headers(s3, "PUT", "/team-a/8", b"eight")
    status, _, body = s3.raw("PUT", "/team-a/8", b"EIGHT", headers)
    assert status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in body
    assert s3.raw("PUT", "/team-a/8", b"eight", headers)[0] == 200
    forged = dict(headers, **{"x-amz-content-sha256": hashlib.sha256(b"EIGHT").hexdigest()})
    status, _, body = s3.raw("PUT", "/team-a/9", b"EIGHT", forged)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


@pytest.mark.requirement("MKV-S3-021", "MKV-S3-002")
def test_roles_and_namespaces_bound_what_a_key_may_do(s3: S3Server) -> None:
    s3.client().put_object(Bucket="team-a", Key="1", Body=b"one")
    reader = s3.client("a-reader")
    assert reader.get_object(Bucket="team-a", Key="1")["Body"].read() == b"one"
    for call in (lambda: reader.put_object(Bucket="team-a", Key="2", Body=b"two"),
                 lambda: reader.delete_object(Bucket="team-a", Key="1"),
                 lambda: s3.client("b-writer").get_object(Bucket="team-a", Key="1"),
                 lambda: s3.client().put_object(Bucket="team-b", Key="2", Body=b"two")):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught) == (403, "AccessDenied")
    with pytest.raises(ClientError) as caught:
        s3.client().get_object(Bucket="team-zzz", Key="1")
    assert _code(caught) == (404, "NoSuchBucket")
    assert reader.get_object(Bucket="team-a", Key="1")["Body"].read() == b"one"


@pytest.mark.requirement("MKV-S3-022")
def test_without_authentication_requests_need_no_signature(open_s3: S3Server) -> None:
    assert open_s3.raw("PUT", "/any-namespace/42", b"forty-two")[0] == 200
    status, _, body = open_s3.raw("GET", "/any-namespace/42")
    assert (status, body) == (200, b"forty-two")
    assert open_s3.client("whoever").get_object(Bucket="any-namespace", Key="42")["Body"].read() == b"forty-two"


# ---- payloads ----------------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-030")
def test_body_sizes_are_checked_before_the_body_is_read(open_s3: S3Server) -> None:
    limit = open_s3.server.engine.limits.max_block_size
    status, _, body = open_s3.raw("PUT", "/ns/1", b"")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    with open_s3.socket() as sock:  # a huge stated body gets its answer without sending a byte of it
        sock.sendall(f"PUT /ns/2 HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        answer = _read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 400") and b"<Code>EntityTooLarge</Code>" in answer
    with open_s3.socket() as sock:
        sock.sendall(b"PUT /ns/3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = _read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 411") and b"<Code>MissingContentLength</Code>" in answer
    with open_s3.socket() as sock:  # a body that ends before its stated size stores nothing
        sock.sendall(b"PUT /ns/4 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort")
        sock.shutdown(1)
        sock.recv(65536)
    assert open_s3.raw("HEAD", "/ns/4")[0] == 404


@pytest.mark.requirement("MKV-S3-031")
def test_payload_hashes_are_checked(open_s3: S3Server) -> None:
    data = b"payload" * 100
    wrong = hashlib.sha256(b"other").hexdigest()
    status, _, body = open_s3.raw("PUT", "/ns/1", data, {"x-amz-content-sha256": wrong})
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    status, _, body = open_s3.raw("PUT", "/ns/1", data, {"Content-MD5": base64.b64encode(b"0" * 16).decode()})
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    crc = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    status, _, body = open_s3.raw("PUT", "/ns/1", data, {"x-amz-checksum-crc32": crc})
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    status, _, body = open_s3.raw("PUT", "/ns/1", data, {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                                         "Content-Encoding": "aws-chunked"})
    assert status == 501 and b"<Code>NotImplemented</Code>" in body
    assert open_s3.raw("HEAD", "/ns/1")[0] == 404
    good = {"x-amz-content-sha256": hashlib.sha256(data).hexdigest(),
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
    assert open_s3.raw("PUT", "/ns/1", data, good)[0] == 200
    assert open_s3.raw("PUT", "/ns/2", data, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})[0] == 200


def _aws_chunked(data: bytes, chunk: int, trailer: str) -> bytes:
    out = b"".join(f"{len(data[i:i + chunk]):x}\r\n".encode() + data[i:i + chunk] + b"\r\n"
                   for i in range(0, len(data), chunk))
    return out + b"0\r\n" + trailer.encode() + b"\r\n\r\n"


@pytest.mark.requirement("MKV-S3-032")
def test_aws_chunked_bodies_are_decoded_and_their_trailer_checked(open_s3: S3Server) -> None:
    data = os.urandom(200_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    assert open_s3.raw("PUT", "/ns/1", _aws_chunked(data, 65536, f"x-amz-checksum-crc32:{crc}"), headers)[0] == 200
    assert open_s3.raw("GET", "/ns/1")[2] == data
    bad = _aws_chunked(data, 65536, "x-amz-checksum-crc32:AAAAAA==")
    status, _, body = open_s3.raw("PUT", "/ns/2", bad, headers)
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    longer = _aws_chunked(data + b"x", 65536, f"x-amz-checksum-crc32:{crc}")
    status, _, body = open_s3.raw("PUT", "/ns/3", longer, headers)
    assert status == 400 and b"<Code>IncompleteBody</Code>" in body
    shorter = _aws_chunked(data[:-1], 65536, f"x-amz-checksum-crc32:{crc}")
    status, _, body = open_s3.raw("PUT", "/ns/5", shorter, headers)
    assert status == 400 and b"<Code>IncompleteBody</Code>" in body
    unknown = dict(headers, **{"x-amz-trailer": "x-amz-checksum-md7"})
    status, _, body = open_s3.raw("PUT", "/ns/4", _aws_chunked(data, 65536, "x-amz-checksum-md7:AAAA"), unknown)
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body
    assert [open_s3.raw("HEAD", f"/ns/{n}")[0] for n in (2, 3, 4, 5)] == [404, 404, 404, 404]


@pytest.mark.requirement("MKV-S3-031")
def test_boto3_uploads_with_a_crc32c_checksum(s3: S3Server) -> None:
    """boto3 adds the checksum it is asked for (a header over HTTP); the endpoint checks it."""
    import io

    data = os.urandom(5 * MiB)
    client = s3.client(request_checksum_calculation="when_supported")
    client.put_object(Bucket="team-a", Key="99", Body=io.BytesIO(data), ChecksumAlgorithm="CRC32C")
    assert client.get_object(Bucket="team-a", Key="99")["Body"].read() == data


@pytest.mark.requirement("MKV-S3-033")
def test_blocks_are_immutable(s3: S3Server) -> None:
    client = s3.client()
    client.put_object(Bucket="team-a", Key="1", Body=b"first")
    client.put_object(Bucket="team-a", Key="1", Body=b"first")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket="team-a", Key="1", Body=b"second")
    assert _code(caught) == (409, "OperationAborted")
    assert client.get_object(Bucket="team-a", Key="1")["Body"].read() == b"first"
    client.delete_object(Bucket="team-a", Key="1")
    client.put_object(Bucket="team-a", Key="1", Body=b"second")
    assert client.get_object(Bucket="team-a", Key="1")["Body"].read() == b"second"


# ---- ranges and errors -------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-041")
def test_ranged_gets(s3: S3Server) -> None:
    client = s3.client()
    data = os.urandom(MiB)
    client.put_object(Bucket="team-a", Key="1", Body=data)
    for header, first, last in (("bytes=0-4095", 0, 4095), ("bytes=1000000-", 1000000, MiB - 1),
                                ("bytes=-10", MiB - 10, MiB - 1), ("bytes=5-99999999", 5, MiB - 1)):
        got = client.get_object(Bucket="team-a", Key="1", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{MiB}"
        assert got["Body"].read() == data[first : last + 1]
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket="team-a", Key="1", Range=f"bytes={MiB}-")
    assert _code(caught) == (416, "InvalidRange")
    got = client.get_object(Bucket="team-a", Key="1", Range="bytes=0-1,4-5")  # several ranges: ignored
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and got["Body"].read() == data


@pytest.mark.requirement("MKV-S3-043")
def test_error_bodies_are_s3_xml(open_s3: S3Server) -> None:
    status, headers, body = open_s3.raw("GET", "/ns/123")
    assert status == 404 and headers["content-type"] == "application/xml"
    assert body.startswith(b"<?xml") and b"<Error><Code>NoSuchKey</Code><Message>" in body
    assert b"<Resource>/ns/123</Resource><RequestId>" in body
    assert headers["x-amz-request-id"] in body.decode()
    status, headers, body = open_s3.raw("HEAD", "/ns/123")
    assert (status, body) == (404, b"")


@pytest.mark.requirement("MKV-S3-043")
def test_the_error_mapping_is_the_table_of_the_spec() -> None:
    """Every row of spec/s3.md's error table, and 500 InternalError for every other code."""
    import re

    from memkv.errors import ErrorCode, error_for
    from memkv.server.s3.errors import from_memkv

    text = (Path(__file__).resolve().parents[2] / "spec" / "s3.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| (\d{3}) \| `(\w+)` \|$", text, re.M)
    assert len(rows) == 7
    table = {ErrorCode[name]: (int(status), code) for names, status, code in rows
             for name in re.findall(r"`([A-Z_]+)`", names)}
    for code in ErrorCode:
        if code is ErrorCode.OK:
            continue
        error = from_memkv(error_for(code, "x"))
        assert (error.status, error.code) == table.get(code, (500, "InternalError")), code


# ---- bounds -----------------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-S3-044")
def test_headers_over_16_kib_are_refused(open_s3: S3Server) -> None:
    with open_s3.socket() as sock:
        sock.sendall(b"GET /ns/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = sock.recv(65536)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")


@pytest.mark.requirement("MKV-S3-044")
def test_a_silent_client_is_cut_at_the_deadline(open_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_endpoint, "REQUEST_TIMEOUT_S", 0.5)
    with open_s3.socket() as sock:
        sock.sendall(b"GET /ns/1 HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        started = time.monotonic()
        assert sock.recv(65536) == b""
        assert time.monotonic() - started < 5


@pytest.mark.requirement("MKV-S3-044")
def test_connections_over_the_cap_are_closed(open_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_endpoint, "MAX_CONNECTIONS", 4)
    held = [open_s3.socket() for _ in range(4)]
    try:
        time.sleep(0.3)
        with open_s3.socket() as extra:
            try:
                extra.sendall(b"HEAD /ns HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = extra.recv(65536)
            except ConnectionResetError:
                answer = b""
            assert answer == b""
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30
    while True:  # slots come back as the handlers see their clients go (however busy the machine)
        try:
            assert open_s3.raw("HEAD", "/ns")[0] == 200
            break
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.requirement("MKV-S3-001")
def test_a_busy_s3_port_stops_the_server_before_the_store_is_made(tmp_path: Path) -> None:
    import socket

    from memkv.errors import Unavailable
    from memkv.server.testing import in_process_server

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable, match="S3 endpoint"):
            in_process_server(str(tmp_path / "store"), s3_listen=f"127.0.0.1:{port}")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.requirement("MKV-S3-020")
def test_malformed_or_underspecified_signatures_are_refused(s3: S3Server) -> None:
    day = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    scope = f"a-writer/{day}/us-east-1/s3/aws4_request"
    for authorization in (f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature={'0' * 64}",
                          "AWS a-writer:c2lnbmF0dXJl",
                          f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature=xyz"):
        status, _, body = s3.raw("GET", "/team-a/1", headers={"Authorization": authorization,
                                                               "x-amz-date": f"{day}T000000Z"})
        assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body, authorization
    headers = _signed_headers(s3, "GET", "/team-a/1", b"")
    del headers["X-Amz-Content-SHA256"]
    status, _, body = s3.raw("GET", "/team-a/1", headers=headers)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
