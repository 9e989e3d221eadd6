"""`memkv serve --shards N`: the flags each shard process gets (memkv/cluster/workers.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv.backends.tcp import TcpTransport
from memkv.cli.main import build_parser
from memkv.cli.serve import build_settings
from memkv.cluster.client import ClusterTransport
from memkv.cluster.workers import shard_ports, worker_flags
from memkv.errors import InvalidArgument
from memkv.server.settings import ServeSettings
from memkv.transport import PutItem


def _settings(*flags: str) -> ServeSettings:
    return build_settings(build_parser().parse_args(["serve", "--data", "/srv/memkv", *flags]))


def test_each_shard_gets_its_own_directory_port_and_capacity_slice() -> None:
    settings = _settings("--shards", "4", "--capacity", "4GiB", "--unit", "1MiB", "--listen", "10.0.0.5:9900",
                         "--insecure-no-auth", "--etcd", "etcd:2379")
    flags = [worker_flags(settings, i) for i in range(4)]
    for index, shard in enumerate(flags):
        assert shard[shard.index("--data") + 1] == f"/srv/memkv/shard-{index}"
        assert shard[shard.index("--listen") + 1] == f"10.0.0.5:{9900 + 2 * index}"
        assert shard[shard.index("--capacity") + 1] == str(1024**3)
        assert "--insecure-no-auth" in shard and shard[shard.index("--etcd") + 1] == "etcd:2379"
        assert "--shards" not in shard


@pytest.mark.parametrize("devices", [("--device", "/dev/nvme0n1,/dev/nvme1n1"),
                                     ("--device", "/dev/nvme0n1", "--device", "/dev/nvme1n1")],
                         ids=["comma-list", "repeated-flag"])
def test_one_device_per_shard_from_a_comma_list_or_a_repeated_flag(devices: tuple[str, ...]) -> None:
    settings = _settings("--shards", "2", *devices, "--format-device")
    assert [f[f.index("--device") + 1] for f in (worker_flags(settings, 0), worker_flags(settings, 1))] == \
        ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert "--format-device" in worker_flags(settings, 1)


@pytest.mark.parametrize("flags", [("--shards", "3", "--device", "/dev/a", "--device", "/dev/b"),
                                   ("--shards", "3", "--device", "/dev/a,/dev/b"),
                                   ("--device", "/dev/a", "--device", "/dev/b")])
def test_a_device_count_that_is_not_the_shard_count_is_refused(flags: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument, match=r"devices for \d+ shards"):
        _settings(*flags)


def test_the_environment_and_the_config_file_take_the_comma_list(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "memkv.yaml"
    config.write_text("shards: 2\ndevice: /dev/nvme0n1,/dev/nvme1n1\n")
    settings = build_settings(build_parser().parse_args(["serve", "--data", "/srv/memkv", "--config", str(config)]))
    assert worker_flags(settings, 1)[worker_flags(settings, 1).index("--device") + 1] == "/dev/nvme1n1"
    monkeypatch.setenv("MEMKV_DEVICE", "/dev/x,/dev/y,/dev/z")
    assert _settings("--shards", "3").device == "/dev/x,/dev/y,/dev/z"


def test_free_ports_when_listening_on_port_zero() -> None:
    flags = worker_flags(_settings("--shards", "2", "--listen", "127.0.0.1:0"), 1)
    assert flags[flags.index("--listen") + 1] == "127.0.0.1:0"
    assert flags[flags.index("--admin-listen") + 1] == "127.0.0.1:0"


def test_every_shard_is_told_its_group_before_it_starts() -> None:
    settings = _settings("--shards", "3", "--listen", "127.0.0.1:0", "--shard-group", "ignored:1")
    ports = shard_ports(settings)
    assert len(set(ports)) == 3 and 0 not in ports  # free ports, chosen before any shard starts
    for index in range(3):
        flags = worker_flags(settings, index, ports)
        assert flags[flags.index("--listen") + 1] == f"127.0.0.1:{ports[index]}"
        assert flags[flags.index("--shard-group") + 1] == ",".join(f"127.0.0.1:{p}" for p in ports)
    assert shard_ports(_settings("--shards", "2", "--listen", "10.0.0.5:9900")) == [9900, 9902]


@pytest.mark.requirement("MKV-CLU-060")
@pytest.mark.parametrize("group", ["10.0.0.5:9900,nohost", "10.0.0.5:0", ",".join(["h:1"] * 257)])
def test_a_malformed_shard_group_is_refused_before_anything_starts(group: str) -> None:
    with pytest.raises(InvalidArgument, match="shard-group"):
        _settings("--shard-group", group)


@contextlib.contextmanager
def _two_shards(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`memkv serve --shards 2` on free ports: the process and the cluster URL it printed; stopped after."""
    command = [sys.executable, "-c", "import sys; from memkv.cli.main import main; sys.exit(main())", "serve",
               "--shards", "2", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--admin-listen", "off",
               "--capacity", "128MiB", "--unit", "64KiB", "--insecure-no-auth"]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert parent.stdout is not None
        line = ""
        for raw in parent.stdout:
            line = raw.decode()
            if "cluster memkv+tcp://" in line:
                break
        yield parent, line.split("cluster ", 1)[1].strip()
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0


@pytest.mark.requirement("MKV-CLU-021")
def test_a_dead_shard_process_is_restarted_on_its_port_with_its_blocks(tmp_path: Path) -> None:
    with _two_shards(tmp_path) as (parent, url):
        keys = [os.urandom(16) for _ in range(40)]
        with memkv.connect(url + "/restart") as client:
            assert all(r.ok for r in client.put([PutItem(k, k * 8) for k in keys]))
            time.sleep(1.5)  # one flush interval: the index of each shard is on disk
            children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
            assert len(children) == 2
            os.kill(int(children[1]), signal.SIGKILL)
            deadline = time.monotonic() + 90  # the restarted shard's start-up (imports) on a loaded machine
            while client.exists(keys) != [True] * len(keys) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get(keys) == [k * 8 for k in keys]  # the same port, the same data


@pytest.mark.requirement("MKV-CLU-060", "MKV-CLU-061")
def test_one_shards_address_reaches_the_whole_group(tmp_path: Path) -> None:
    with _two_shards(tmp_path) as (_, url):
        group = url.removeprefix("memkv+tcp://").split(",")
        keys = [os.urandom(16) for _ in range(40)]
        with memkv.connect(f"memkv+tcp://{group[0]}/pasted") as client:
            assert isinstance(client, ClusterTransport) and sorted(s.address for s in client.shards) == sorted(group)
            assert all(r.ok for r in client.put([PutItem(k, k * 8) for k in keys]))
            placed = [client._placement.shard_of(k).address for k in keys]
        assert set(placed) == set(group)  # 40 random keys reach both shards (all on one: p = 2 ** -39)
        for address in group:
            with memkv.connect(f"memkv+tcp://{address}/pasted?direct=1") as shard:
                assert isinstance(shard, TcpTransport) and shard.shard_group == tuple(group)
                assert shard.exists(keys) == [p == address for p in placed]  # each key on its shard alone
