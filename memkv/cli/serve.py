"""`memkv serve`: run the memkv server (wire protocol on 9900, admin HTTP on 9901)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from ..server.logs import configure_logging
from ..server.settings import ServeSettings, add_flags, flags_of, load_settings
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run a memkv server over a store",
                              description="Run a memkv server: signed wire protocol, admin HTTP API, metrics.")
    p.add_argument("--config", help="config file (YAML, or TOML by the .toml extension) with the settings below "
                                     "under the same names (capacity: 64GiB); MEMKV_* variables override it, flags "
                                     "override both; reference: docs/settings.md")
    add_flags(p)
    return p


def build_settings(args: argparse.Namespace) -> ServeSettings:
    return load_settings(flags_of(args), args.config)


def run(args: argparse.Namespace) -> int:
    from ..server.service import MemkvServer

    settings = build_settings(args)
    configure_logging(settings.log_level, settings.log_format, settings.quiet)
    if settings.shards > 1:  # one process per shard (spec/cluster.md)
        from ..cluster.workers import run_shards

        return run_shards(settings)
    server = MemkvServer(settings.server_config())
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = server.address
    admin = server.admin_address
    scheme = "https" if server.admin is not None and server.admin.tls else "http"
    admin_text = f"{scheme}://{admin[0]}:{admin[1]}" if admin else "off"
    auth = "on" if server.keyring is not None else "OFF"
    from ..cluster.serving import announce

    try:
        registration = announce(settings, (host, port))  # etcd membership, when --etcd is set
    except BaseException:
        server.shutdown()
        raise
    s3_text = "" if server.s3 is None else " s3 http://{}:{}".format(*server.s3.address)
    print(f"memkv serve: listening on {host}:{port} admin {admin_text} auth {auth}{s3_text}", flush=True)
    while not stop.wait(0.5):
        pass
    if registration is not None:
        registration.close()
    print("memkv serve: shutting down (draining connections, flushing the index)", flush=True)
    server.shutdown()
    print("memkv serve: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memkv")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    from ..errors import MemkvError

    try:
        return run(args)
    except MemkvError as exc:
        print(f"memkv: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 2
