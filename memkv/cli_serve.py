"""`memkv serve`: run the memkv server (wire protocol on 9900, admin HTTP on 9901)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .server.config import ServerConfig


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run a memkv server over a store",
                              description="Run a memkv server: signed wire protocol, admin HTTP API, metrics.")
    p.add_argument("--config", help="config file (YAML, or TOML by extension); flags override it")
    p.add_argument("--data", dest="data_dir", help="store directory (index, lock; device file unless --device)")
    p.add_argument("--device", help="file or block device holding block payloads")
    p.add_argument("--format-device", dest="format_device", action="store_true", default=None,
                   help="format --device if it holds no memkv store yet (DESTROYS what is on it); "
                        "a device that already holds a store is opened as it is")
    p.add_argument("--capacity", help="store capacity for a new device file, e.g. 64GiB (default 1GiB)")
    p.add_argument("--unit", help="allocation unit, e.g. 1MiB")
    p.add_argument("--listen", help="wire protocol address (default 127.0.0.1:9900)")
    p.add_argument("--admin-listen", help="admin HTTP address (default: 127.0.0.1, listen port + 1; 'off' disables)")
    p.add_argument("--keys", dest="keys_file", help="keys file: namespaces and their keys (never secrets on "
                                                   "the command line)")
    p.add_argument("--insecure-no-auth", action="store_true", default=None,
                   help="accept unauthenticated clients on every namespace: local development ONLY")
    p.add_argument("--max-connections", type=int, help="concurrent client connections (default 256)")
    p.add_argument("--buffer-memory", help="memory for request and answer buffers (default 1GiB)")
    p.add_argument("--idle-timeout", dest="idle_timeout_s", type=float, help="seconds an idle connection is kept")
    p.add_argument("--frame-timeout", dest="frame_timeout_s", type=float,
                   help="seconds a started frame may take to arrive (plus 1 s per MiB of payload)")
    p.add_argument("--nixl", choices=("auto", "on", "off"),
                   help="NIXL data path for memkv+nixl:// clients: auto (start on first use, default), on (fail "
                        "at start without NIXL), off")
    p.add_argument("--nixl-staging", help="registered DRAM staging pool of the NIXL data path (default 256MiB)")
    p.add_argument("--log-level", default="INFO")
    return p


def build_config(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig.from_file(args.config) if args.config else ServerConfig()
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in (
        "data_dir", "device", "format_device", "capacity", "unit", "listen", "admin_listen", "keys_file",
        "insecure_no_auth", "max_connections", "buffer_memory", "idle_timeout_s", "frame_timeout_s", "nixl",
        "nixl_staging")}
    config.update(overrides)
    return config


def run(args: argparse.Namespace) -> int:
    from .server.core import MemkvServer

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = MemkvServer(build_config(args))
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = server.address
    admin = server.admin_address
    admin_text = f"http://{admin[0]}:{admin[1]}" if admin else "off"
    auth = "on" if server.keyring is not None else "OFF"
    print(f"memkv serve: listening on {host}:{port} admin {admin_text} auth {auth}", flush=True)
    while not stop.wait(0.5):
        pass
    print("memkv serve: shutting down (draining connections, flushing the index)", flush=True)
    server.shutdown()
    print("memkv serve: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memkv")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_parser(subparsers)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    from .errors import MemkvError

    try:
        return run(args)
    except MemkvError as exc:
        print(f"memkv: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 2
