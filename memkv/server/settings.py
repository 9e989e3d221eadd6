"""The settings of `memkv serve`: one model for the config file, MEMKV_* variables and flags.

Each setting has one name: `--capacity` on the command line, `capacity:` in a YAML or TOML
config file, `MEMKV_CAPACITY` in the environment. Flags override the environment, which overrides
the file. The flags, docs/settings.md and docs/memkv.example.yaml are generated from this model
(`python -m memkv.server.settings markdown|example`).
"""

from __future__ import annotations

import argparse
import contextvars
import sys
import tomllib
import types
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from ..errors import InvalidArgument
from ..units import parse_size
from ..wire.messages import check_shard_group
from .config import ServerConfig

ENV_PREFIX = "MEMKV_"


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("a size is a number of bytes or a text such as 16MiB")
    try:
        return parse_size(value)
    except InvalidArgument as exc:  # pydantic reports ValueError with the setting's name
        raise ValueError(exc.message) from None


Size = Annotated[int, BeforeValidator(_size), Field(gt=0)]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# names the config file used before settings had one name each
_RENAMED = {"data_dir": "data", "keys_file": "keys", "idle_timeout_s": "idle_timeout",
            "frame_timeout_s": "frame_timeout", "hello_window_s": "hello_window",
            "shutdown_grace_s": "shutdown_grace", "flush_interval_s": "flush_interval"}
_FILE_VALUES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("memkv_settings_file",
                                                                                  default=None)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True,
                                      case_sensitive=False)

    data: str = Field(description="store directory: index and lock, and the device file unless --device")
    device: str | None = Field(None, description="file or block device holding block payloads; with --shards N, "
                                                 "one per shard: repeat --device (JBOF) or give a comma list",
                               json_schema_extra={"repeatable": True})
    format_device: bool = Field(False, description="format --device if it holds no memkv store yet (DESTROYS "
                                                   "what is on it); a device that holds a store is opened as is")
    capacity: Size = Field(1024**3, description="capacity of a new device file, e.g. 64GiB")
    unit: Size = Field(1024**2, description="allocation unit of a new store, a multiple of 4096, e.g. 1MiB")
    listen: str = Field("127.0.0.1:9900", description="wire protocol address, host:port")
    admin_listen: str | None = Field(None, description="admin HTTP address, host:port (default: 127.0.0.1 and the "
                                                       "listen port + 1, even when --listen is on every interface); "
                                                       "off disables the admin API")
    keys: str | None = Field(None, description="keys file: namespaces and their keys (secrets never go on the "
                                               "command line)")
    insecure_no_auth: bool = Field(False, description="accept unauthenticated clients on every namespace: local "
                                                      "development ONLY")
    max_connections: int = Field(256, gt=0, description="concurrent client connections")
    buffer_memory: Size = Field(1024**3, description="memory for request and answer buffers")
    max_frame_payload: Size = Field(256 * 1024**2, description="largest frame payload accepted")
    idle_timeout: float = Field(300.0, gt=0, description="seconds an idle connection is kept")
    frame_timeout: float = Field(10.0, gt=0, description="seconds a started frame may take to arrive (plus 1 s "
                                                         "per MiB of payload)")
    hello_window: float = Field(60.0, gt=0, description="seconds a HELLO timestamp may differ from the server "
                                                        "clock")
    max_unauthenticated: int = Field(64, gt=0, description="connections that have not completed HELLO, in all "
                                                           "(inside max_connections)")
    max_unauthenticated_per_peer: int = Field(32, gt=0, description="connections that have not completed HELLO, "
                                                                    "from one address")
    hello_timeout: float = Field(2.0, gt=0, description="seconds a new connection has to deliver a complete HELLO")
    max_connections_per_peer: int = Field(0, ge=0, description="connections from one address (0: no cap beyond "
                                                               "max_connections)")
    shutdown_grace: float = Field(10.0, ge=0, description="seconds in-flight requests get to finish on SIGTERM")
    flush_interval: float = Field(1.0, gt=0, description="seconds between index flushes")
    nixl: Literal["auto", "on", "off"] = Field("auto", description="NIXL data path for memkv+nixl:// clients: auto "
                                                                   "(start on first use), on (fail at start "
                                                                   "without NIXL), off")
    nixl_staging: Size = Field(256 * 1024**2, description="registered DRAM staging pool of the NIXL data path")
    access_log: str | None = Field(None, description="record one trace line per lookup for `memkv plan` (no "
                                                     "payloads, keys or namespace names: keyed hashes only)")
    access_log_max_bytes: Size = Field(64 * 1024**2, description="rotate the access log at this size, one older "
                                                                 "file kept")
    s3_listen: str | None = Field(None, description="address, host:port, of the optional S3-compatible endpoint "
                                                    "(spec/s3.md; bucket = namespace; needs memkv[s3]); off by "
                                                    "default")
    admin_tls_cert: str | None = Field(None, description="PEM certificate (chain) of the admin API: with "
                                                         "--admin-tls-key it serves HTTPS only")
    admin_tls_key: str | None = Field(None, description="PEM private key of --admin-tls-cert (keep it chmod 600)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="log level (case does not matter)")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text or as one JSON object each")
    quiet: bool = Field(False, description="log warnings and errors only (also NIXL's and UCX's INFO lines)")
    shards: int = Field(1, ge=1, le=256, description="worker processes, each a shard with its own slice of the "
                                                     "capacity (or its own --device), "
                                                     "its own port (listen port + 2 x shard) and data directory")
    etcd: str | None = Field(None, description="etcd endpoint host:port: register every shard under a lease "
                                               "(spec/cluster.md section 5)")
    cluster: str = Field("memkv", description="cluster name the shards register under in etcd")
    shard_id: str | None = Field(None, description="shard id in etcd (default: the advertised host:port, as a "
                                                   "static list of addresses names it)")
    advertise: str | None = Field(None, description="host clients reach this server at (default: the --listen "
                                                    "host, or the host name when it listens on every interface)")
    shard_group: str | None = Field(None, description="every shard of this server's group as a comma list of "
                                                      "host:port, its own included, named in capabilities so that "
                                                      "a client given one address uses them all (MKV-CLU-060; "
                                                      "memkv serve --shards N sets it)")

    def shard_group_addresses(self) -> tuple[str, ...]:
        return _addresses(self.shard_group)

    @field_validator("shard_group")
    @classmethod
    def _shard_group_is_host_ports(cls, value: str | None) -> str | None:
        """Refused here, not by every client that later reads it from capabilities (MKV-CLU-060)."""
        check_shard_group(list(_addresses(value)))
        return value

    @model_validator(mode="after")
    def _one_device_per_shard(self) -> ServeSettings:
        devices = [d for d in (self.device or "").split(",") if d]
        if self.device is not None and len(devices) != self.shards:
            raise ValueError(f"device names {len(devices)} devices for {self.shards} shards: give one per shard")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServeSettings:
        if (self.admin_tls_cert is None) != (self.admin_tls_key is None):
            raise ValueError("admin_tls_cert and admin_tls_key go together")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # flags > MEMKV_* environment > config file
        return init_settings, env_settings, InitSettingsSource(settings_cls, _FILE_VALUES.get() or {})

    def server_config(self) -> ServerConfig:
        return ServerConfig(
            data_dir=self.data, device=self.device, format_device=self.format_device, capacity=self.capacity,
            unit=self.unit, listen=self.listen, admin_listen=self.admin_listen, keys_file=self.keys,
            insecure_no_auth=self.insecure_no_auth, max_connections=self.max_connections,
            buffer_memory=self.buffer_memory, max_frame_payload=self.max_frame_payload,
            idle_timeout_s=self.idle_timeout, frame_timeout_s=self.frame_timeout, hello_window_s=self.hello_window,
            max_unauthenticated=self.max_unauthenticated,
            max_unauthenticated_per_peer=self.max_unauthenticated_per_peer, hello_timeout_s=self.hello_timeout,
            max_connections_per_peer=self.max_connections_per_peer, shutdown_grace_s=self.shutdown_grace,
            flush_interval_s=self.flush_interval, nixl=self.nixl, nixl_staging=self.nixl_staging,
            access_log=self.access_log, access_log_max_bytes=self.access_log_max_bytes,
            admin_tls_cert=self.admin_tls_cert, admin_tls_key=self.admin_tls_key, s3_listen=self.s3_listen,
            shard_group=self.shard_group_addresses())


def _addresses(comma_list: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (comma_list or "").split(",") if a.strip())


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if path.endswith(".toml") else yaml.safe_load(raw)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {path} must be a mapping of setting names to values")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = str(name).replace("-", "_")
        if key in _RENAMED:
            raise InvalidArgument(f"config file {path}: setting {name!r} is now {_RENAMED[key]!r} (the same name "
                                  f"as the flag --{_RENAMED[key].replace('_', '-')})")
        values[key] = value
    return values


def load_settings(flags: dict[str, Any], config_file: str | None = None) -> ServeSettings:
    """Validate flags (None = not given) over MEMKV_* variables over the config file; InvalidArgument names
    every bad setting and where it came from."""
    token = _FILE_VALUES.set(read_config_file(config_file) if config_file else {})
    try:
        return ServeSettings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            problems.append(f"{name} (--{name.replace('_', '-')}, {ENV_PREFIX}{name.upper()}"
                            f"{', ' + config_file if config_file else ''}): {error['msg']}")
        raise InvalidArgument("invalid server settings: " + "; ".join(problems)) from None
    finally:
        _FILE_VALUES.reset(token)


# ---- flags and reference pages generated from the model -------------------------------------------
def _choices(info: FieldInfo) -> tuple[str, ...] | None:
    annotation = info.annotation
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return None


def _is_flag(info: FieldInfo) -> bool:
    return info.annotation is bool


def _is_repeatable(info: FieldInfo) -> bool:
    return isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("repeatable") is True


def _type_name(info: FieldInfo) -> str:
    choices = _choices(info)
    if choices:
        return ", ".join(choices)
    if _is_size(info):
        return "size"
    annotation: Any = info.annotation
    if isinstance(annotation, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    names: dict[Any, str] = {str: "text", bool: "true or false", int: "integer", float: "seconds"}
    return names.get(annotation, str(annotation))


def _is_size(info: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) for m in info.metadata)


def _size_text(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    if info.default is None:
        return "(none)"
    if _is_flag(info):
        return str(info.default).lower()
    return _size_text(info.default) if _is_size(info) else str(info.default)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults stay None so that only given flags override the other sources."""
    for name, info in ServeSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        text = f"{info.description} [{ENV_PREFIX}{name.upper()}; default {_default_text(info)}]"
        if _is_flag(info):
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        elif _is_repeatable(info):  # each use adds one value; the setting holds them as a comma list
            parser.add_argument(flag, dest=name, action="append", default=None, help=text, metavar=name.upper())
        else:  # values, choices included, are checked by the model: one error message for every source
            choices = _choices(info)
            parser.add_argument(flag, dest=name, default=None, help=text,
                                metavar="{" + ",".join(choices) + "}" if choices else name.upper())


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name, None) for name in ServeSettings.model_fields}
    return {name: ",".join(v) if isinstance(v, list) else v for name, v in values.items()}


def markdown_reference() -> str:
    lines = ["# `memkv serve` settings", "",
             "Generated from `memkv/server/settings.py` by `python -m memkv.server.settings markdown`;",
             "tests/server/test_settings.py checks it is current. Each setting has one name: the flag, the config",
             "file key (YAML, or TOML by the `.toml` extension, given with `--config FILE`) and the",
             "environment variable. Flags override the environment, which overrides the file. Sizes take",
             "`4096`, `16MiB`, `4GiB`; an invalid value stops the server with the setting's name. A",
             "commented example file: [`memkv.example.yaml`](memkv.example.yaml).", "",
             "| flag | config file | environment | type | default | meaning |", "|---|---|---|---|---|---|"]
    for name, info in ServeSettings.model_fields.items():
        lines.append(f"| `--{name.replace('_', '-')}` | `{name}` | `{ENV_PREFIX}{name.upper()}` | "
                     f"{_type_name(info)} | {_default_text(info)} | {info.description} |")
    return "\n".join(lines) + "\n"


def example_file() -> str:
    lines = ["# memkv serve --config memkv.example.yaml", "#",
             "# Generated from memkv/server/settings.py (python -m memkv.server.settings example).",
             "# Every setting is listed with its default; uncomment and change what you need. Each key",
             "# is also a flag (--name-with-dashes) and a variable (MEMKV_NAME); flags win, then the",
             "# environment, then this file.", ""]
    for name, info in ServeSettings.model_fields.items():
        lines.append(f"# {info.description} ({_type_name(info)})")
        if info.is_required():
            lines.append(f"{name}: ./memkv-data")
        else:
            value = "null" if info.default is None else _default_text(info)
            lines.append(f"# {name}: {value}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    what = (sys.argv[1:] if argv is None else argv) or ["markdown"]
    if what[0] == "markdown":
        sys.stdout.write(markdown_reference())
    elif what[0] == "example":
        sys.stdout.write(example_file())
    else:
        print("usage: python -m memkv.server.settings markdown|example", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
