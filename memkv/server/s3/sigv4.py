"""AWS Signature Version 4 checks over memkv's namespace keys (MKV-S3-020).

The access key id is the memkv key id; the secret access key is the lower-case hex of the key's
secret bytes. The canonical request, string to sign and signature are botocore's own SigV4
functions, fed with exactly the headers the client says it signed.
"""

from __future__ import annotations

import datetime
import hmac
import re
from collections.abc import Sequence

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ..keyring import ApiKey, KeyRing
from .errors import S3Error

MAX_SKEW = datetime.timedelta(minutes=15)
_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/s3/aws4_request\s*,\s*"
                      r"SignedHeaders=([a-z0-9;_.-]+)\s*,\s*Signature=([0-9a-f]{64})")
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def secret_access_key(key: ApiKey) -> str:
    """The S3 secret of a namespace key."""
    return key.secret.hex()


def _denied(code: str, message: str) -> S3Error:
    return S3Error(403, code, message)


def verify(method: str, target: str, headers: Sequence[tuple[str, str]], keyring: KeyRing,
           now: datetime.datetime | None = None) -> ApiKey:
    """The namespace key that signed this request, or S3Error (403) saying why it is refused.

    `target` is the request target as sent (path and query, percent-encoded); header names are
    lower case, in the order received.
    """
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name, []).append(value)
    authorization = values.get("authorization")
    if not authorization:
        raise _denied("AccessDenied", "this endpoint needs an AWS Signature Version 4 Authorization header")
    match = _AUTH_RE.fullmatch(authorization[0].strip())
    if len(authorization) != 1 or match is None:
        raise _denied("SignatureDoesNotMatch", "the Authorization header is not AWS4-HMAC-SHA256 for service s3")
    key_id, scope_date, region, signed_text, signature = match.groups()
    key = keyring.get(key_id)
    if key is None:
        raise _denied("InvalidAccessKeyId", f"no namespace key has the id {key_id!r}")
    signed = signed_text.split(";")
    if "host" not in signed or "x-amz-date" not in signed or any(name not in values for name in signed):
        raise _denied("SignatureDoesNotMatch", "host and x-amz-date must be signed, and every signed header sent")
    stamp = values["x-amz-date"][0]
    _check_time(stamp, scope_date, now or datetime.datetime.now(datetime.UTC))
    payload_hash = values.get("x-amz-content-sha256", [""])[0]
    if not payload_hash:
        raise _denied("SignatureDoesNotMatch", "x-amz-content-sha256 is missing")
    expected = _signature(method, target, signed, values, payload_hash, stamp, region, key)
    if not hmac.compare_digest(expected, signature):
        raise _denied("SignatureDoesNotMatch", "the request signature does not match the one computed with "
                                               "the key's secret")
    return key


def _check_time(stamp: str, scope_date: str, now: datetime.datetime) -> None:
    try:
        when = datetime.datetime.strptime(stamp, _DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise _denied("SignatureDoesNotMatch", "x-amz-date is not YYYYMMDDTHHMMSSZ") from None
    if stamp[:8] != scope_date:
        raise _denied("SignatureDoesNotMatch", "the credential scope date is not the x-amz-date day")
    if abs(now - when) > MAX_SKEW:
        raise _denied("RequestTimeTooSkewed", "x-amz-date differs from the server clock by more than 15 minutes")


def _signature(method: str, target: str, signed: list[str], values: dict[str, list[str]], payload_hash: str,
               stamp: str, region: str, key: ApiKey) -> str:
    signer = SigV4Auth(Credentials(key.key_id, secret_access_key(key)), "s3", region)
    host = values["host"][0]
    request = AWSRequest(method=method, url=f"http://{host}{target}")
    request.context["timestamp"] = stamp
    signed_headers = HTTPHeaders()
    for name in signed:
        for value in values[name]:
            signed_headers[name] = value
    path = target.partition("?")[0]
    canonical = "\n".join([method, path, signer.canonical_query_string(request),
                           signer.canonical_headers(signed_headers) + "\n", signer.signed_headers(signed_headers),
                           payload_hash])
    return str(signer.signature(signer.string_to_sign(request, canonical), request))
