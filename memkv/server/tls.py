"""TLS for the admin HTTP API: the server's context from a certificate and key (PEM)."""

from __future__ import annotations

import ssl

from ..errors import InvalidArgument


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; InvalidArgument naming the files when they cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot use TLS certificate {cert_file} with key {key_file}: {exc}") from None
    return context


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies the server's certificate and host name against `ca_file`, else the system's trust store."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot use CA file {ca_file}: {exc}") from None
