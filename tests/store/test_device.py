"""The device: O_DIRECT on ext4, buffered where O_DIRECT is refused or switched off, any caller buffer."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers_store import KiB, MiB, key, open_engine, payload

from memkv.buffers import aligned_buffer
from memkv.errors import InvalidArgument, Unavailable
from memkv.store import device as device_module
from memkv.store.device import BOUNCE_SIZE, MEMORY_FILESYSTEMS, Device, DeviceFailure, mount_of, open_direct
from memkv.store.io_engines import select_engine, uring_status
from memkv.transport import PutItem

SIZE = 16 * MiB
SIZES = [1, 4095, 4096, 4097, 3 * 4096 + 5, 64 * KiB, BOUNCE_SIZE + 4097]


def direct_supported(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_bytes(bytes(4096))
    try:
        fd = os.open(probe, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        return False
    os.close(fd)
    return hasattr(os, "O_DIRECT")


def source(kind: str, data: bytes) -> memoryview:
    if kind == "aligned":
        buf = aligned_buffer(len(data))
        buf[:] = data
        return buf
    if kind == "unaligned":
        raw = bytearray(len(data) + 1)
        raw[1:] = data
        return memoryview(raw)[1:]
    return memoryview(data)  # read-only bytes


def dest(kind: str, size: int) -> memoryview:
    if kind == "aligned":
        return aligned_buffer(size)
    return memoryview(bytearray(size + 3))[3:]


@pytest.fixture(params=["direct", "buffered"])
def dev(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    if request.param == "buffered":
        monkeypatch.setenv("MEMKV_DIRECT", "0")
    elif not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    device = Device(str(tmp_path / "dev.img"), size=SIZE, create=True)
    assert device.direct is (request.param == "direct")
    request.addfinalizer(device.close)
    return device


@pytest.mark.requirement("MKV-OPS-001", "MKV-DUR-004")
@pytest.mark.parametrize("src_kind", ["aligned", "unaligned", "readonly"])
@pytest.mark.parametrize("dst_kind", ["aligned", "unaligned"])
def test_round_trip_any_size_and_alignment(dev: Device, src_kind: str, dst_kind: str) -> None:
    offset = 1 * MiB
    for i, size in enumerate(SIZES):
        data = payload(i, size)
        dev.write(offset, source(src_kind, data))
        out = dest(dst_kind, size)
        dev.read_into(offset, out)
        assert bytes(out) == data, f"size {size}"


@pytest.mark.requirement("MKV-OPS-001")
def test_write_pads_only_up_to_the_next_4k(dev: Device) -> None:
    neighbour = payload(99, 4096)
    dev.write(8192, memoryview(neighbour))
    dev.write(0, memoryview(payload(1, 4097)))  # pads 4097..8191, must not touch 8192
    out = aligned_buffer(4096)
    dev.read_into(8192, out)
    assert bytes(out) == neighbour


@pytest.mark.requirement("MKV-CAP-004")
def test_unaligned_or_out_of_range_io_is_refused(dev: Device) -> None:
    with pytest.raises(InvalidArgument):
        dev.write(100, memoryview(b"x"))
    with pytest.raises(InvalidArgument):
        dev.write(SIZE - 4096, memoryview(bytes(4097)))
    with pytest.raises(InvalidArgument):
        dev.read_into(SIZE, memoryview(bytearray(1)))
    with pytest.raises(InvalidArgument):
        dev.read_into(-4096, memoryview(bytearray(1)))


def test_missing_device_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        Device(str(tmp_path / "absent.img"))
    with pytest.raises(InvalidArgument):
        Device(str(tmp_path / "new.img"), size=0, create=True)


def test_o_direct_refused_by_the_filesystem_falls_back_to_buffered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_direct(path: str, flags: int, *args: int) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "O_DIRECT not supported")
        return real_open(path, flags, *args)

    monkeypatch.setattr(device_module.os, "open", no_direct)
    device = Device(str(tmp_path / "dev.img"), size=SIZE, create=True)
    try:
        assert not device.direct
        data = payload(3, 10_000)
        device.write(4096, memoryview(data))
        out = bytearray(10_000)
        device.read_into(4096, memoryview(out))
        assert bytes(out) == data
    finally:
        device.close()


def test_tmpfs_device_works(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm")
    path = shm / f"memkv-test-{os.getpid()}-{tmp_path.name}.img"
    try:
        device = Device(str(path), size=SIZE, create=True)
        try:
            # Older kernels refuse O_DIRECT on tmpfs (buffered fallback); newer ones accept it.
            for i, size in enumerate(SIZES):
                data = payload(i, size)
                device.write(0, source("unaligned", data))
                out = dest("unaligned", size)
                device.read_into(0, out)
                assert bytes(out) == data
        finally:
            device.close()
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.requirement("MKV-OPS-001", "MKV-DUR-001")
@pytest.mark.parametrize("mode", ["direct", "buffered", "tmpfs"])
def test_engine_round_trip_and_restart_per_io_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    directory = tmp_path / "store"
    if mode == "buffered":
        monkeypatch.setenv("MEMKV_DIRECT", "0")
    elif mode == "tmpfs":
        if not os.access("/dev/shm", os.W_OK):
            pytest.skip("no writable /dev/shm")
        directory = Path(f"/dev/shm/memkv-test-{os.getpid()}-{tmp_path.name}")
    elif not direct_supported(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    sizes = [1, 4097, 256 * KiB, 256 * KiB + 1, 700_001]
    try:
        engine = open_engine(directory)
        assert engine.stats()["direct_io"] is (mode == "direct") or mode == "tmpfs"
        unaligned = [source("unaligned", payload(i, n)) for i, n in enumerate(sizes)]
        assert all(r.ok for r in engine.put("ns", [PutItem(key(i), v) for i, v in enumerate(unaligned)]))
        engine.close()
        engine = open_engine(directory)
        try:
            for i, n in enumerate(sizes):
                for kind in ("aligned", "unaligned"):
                    out = dest(kind, n + 4096)
                    (res,) = engine.get_into("ns", [key(i)], [out])
                    assert res.ok and res.length == n
                    assert bytes(out[:n]) == payload(i, n)
        finally:
            engine.close()
    finally:
        if mode == "tmpfs":
            for child in directory.iterdir():
                child.unlink()
            directory.rmdir()


def test_mount_of_picks_the_longest_mount_and_unescapes_spaces(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nnone /dev/hugepages hugetlbfs rw 0 0\n"
                      "tmpfs /mnt/my\\040ram tmpfs rw 0 0\n", encoding="utf-8")
    assert mount_of("/dev/hugepages/memkv", str(mounts)) == ("/dev/hugepages", "hugetlbfs")
    assert mount_of("/mnt/my ram/store", str(mounts)) == ("/mnt/my ram", "tmpfs")
    assert mount_of("/var/lib/memkv", str(mounts)) == ("/", "ext4")
    assert mount_of("/x", str(tmp_path / "absent")) is None
    assert {"tmpfs", "ramfs", "hugetlbfs"} <= MEMORY_FILESYSTEMS


def test_doctor_and_store_agree_on_o_direct(tmp_path: Path) -> None:
    """`memkv doctor` reports the open mode the store itself picks for the same directory."""
    from memkv.cli.doctor_checks import check_data_path

    check = check_data_path(Path("/proc"), str(tmp_path))
    fd, direct = open_direct(str(tmp_path / "device"), os.O_RDWR | os.O_CREAT)
    os.close(fd)
    assert check.details["o_direct"] is direct


@pytest.mark.requirement("MKV-ERR-010")
def test_an_os_error_of_the_device_is_unavailable_naming_it(tmp_path: Path) -> None:
    """The device is where an OSError becomes a spec error: the engine above sees UNAVAILABLE."""
    device = Device(str(tmp_path / "dev.img"), size=SIZE, create=True)
    os.close(device.fd)  # every read, write and fdatasync now fails with EBADF
    try:
        for attempt in (lambda: device.write(0, memoryview(bytes(4096))),
                        lambda: device.read_into(0, aligned_buffer(4096)),
                        device.sync):
            with pytest.raises(Unavailable) as failed:
                attempt()
            assert isinstance(failed.value, DeviceFailure) and "EBADF" in failed.value.message
        assert f"fdatasync of device {device.path}" in failed.value.message
    finally:
        device.fd = -1
        device.close()


@pytest.mark.requirement("MKV-OPS-001")
@pytest.mark.parametrize("src_kind", ["aligned", "unaligned", "readonly"])
@pytest.mark.parametrize("io", ["uring", "threads"])
def test_write_during_writes_every_piece_and_returns_the_callable(dev: Device, src_kind: str, io: str) -> None:
    if io == "uring" and not uring_status()[0]:
        pytest.skip("io_uring unavailable")
    dev.engine.close()
    dev.engine = select_engine(io)
    sizes = [MiB, 3 * 4096, 4097]  # whole pages, then a tail that an O_DIRECT device bounces
    pieces = [(2 * MiB * (i + 1), source(src_kind, payload(i, n))) for i, n in enumerate(sizes)]
    whole = pieces[:2]
    goes_straight = not dev.direct or src_kind == "aligned"
    assert dev.writes_overlap(whole) is (io == "uring" and goes_straight)
    assert dev.writes_overlap(pieces) is (io == "uring" and not dev.direct)
    for batch in (whole, pieces):
        calls: list[int] = []
        assert dev.write_during(batch, lambda calls=calls: calls.append(1) or 42) == 42  # type: ignore[misc]
        assert calls == [1]
        for (offset, data), n in zip(batch, sizes, strict=False):
            out = aligned_buffer(n)
            dev.read_into(offset, out)
            assert bytes(out) == bytes(data)


def test_write_during_refuses_unaligned_or_out_of_range_pieces(dev: Device) -> None:
    for offset, size in ((100, 4096), (SIZE - 4096, 4097)):
        with pytest.raises(InvalidArgument):
            dev.write_during([(offset, memoryview(bytes(size)))], lambda: pytest.fail("must not run"))
