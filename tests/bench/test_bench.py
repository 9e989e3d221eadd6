"""`memkv bench` with tiny sizes: the report's shape, not its speed (memkv.bench.runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memkv.bench.common import BenchConfig, parse_sizes
from memkv.bench.runner import format_report, run_bench
from memkv.cli.main import main
from memkv.errors import InvalidArgument, Unsupported
from memkv.store.io_engines import uring_status

KiB, MiB = 1024, 1024 * 1024


def test_parse_sizes() -> None:
    assert parse_sizes("2,4,8,16MiB") == [2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB]
    assert parse_sizes("64KiB, 1MiB") == [64 * KiB, MiB]
    assert parse_sizes("8192") == [8192]
    with pytest.raises(InvalidArgument):
        parse_sizes("3000")
    with pytest.raises(InvalidArgument):
        parse_sizes("")
    with pytest.raises(InvalidArgument):
        parse_sizes("2,lots")


def test_bench_report_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--backend", "file", "--sizes", "64KiB,128KiB", "--count", "3", "--rounds", "2",
            "--dir", str(tmp_path), "--json", "--quiet"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "file" and report["count"] == 3 and report["rounds"] == 2
    assert isinstance(report["direct_io"], bool)
    rows = report["results"]
    assert [(r["size"], r["op"]) for r in rows] == [(64 * KiB, "put"), (64 * KiB, "get"),
                                                    (128 * KiB, "put"), (128 * KiB, "get")]
    for row in rows:
        assert row["ratio"] > 0
        for path in ("memkv", "raw"):
            stats = row[path]
            assert stats["gb_per_s"] > 0 and len(stats["rounds_gb_per_s"]) == 2
            assert 0 < stats["p50_ms"] <= stats["p99_ms"]
            assert stats["ops"] == 6
        assert row["ratio"] == pytest.approx(row["memkv"]["gb_per_s"] / row["raw"]["gb_per_s"])
    assert report["target"]["met"] is None  # no 16 MiB row
    assert list(tmp_path.iterdir()) == []  # store and raw file removed
    assert "ratio" in format_report(report)


def test_a_dir_the_bench_made_is_removed_with_the_run_and_one_it_found_is_left(tmp_path: Path) -> None:
    made = tmp_path / "made" / "here"
    run_bench(BenchConfig(sizes=(64 * KiB,), count=2, rounds=1, directory=str(made)))
    assert not made.exists() and (tmp_path / "made").is_dir()  # only the folder it named
    found = tmp_path / "found"
    found.mkdir()
    run_bench(BenchConfig(sizes=(64 * KiB,), count=2, rounds=1, directory=str(found)))
    assert found.is_dir() and list(found.iterdir()) == []
    run_bench(BenchConfig(sizes=(64 * KiB,), count=2, rounds=1, directory=str(made), keep=True))
    assert len(list(made.iterdir())) == 1  # --keep: the run's directory stays, and so its folder


def test_bench_keep(tmp_path: Path) -> None:
    report = run_bench(BenchConfig(sizes=(64 * KiB,), count=2, rounds=1, directory=str(tmp_path), keep=True))
    kept = Path(report["dir"])
    assert kept.parent == tmp_path and (kept / "raw.img").exists() and (kept / "memkv").is_dir()


def test_bench_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgument, match="unknown backend"):
        run_bench(BenchConfig(backend="carrier-pigeon"))
    import memkv.nixl.agent as nixl_agent

    def no_nixl() -> None:
        raise Unsupported("NIXL is not importable (test)")

    monkeypatch.setattr(nixl_agent, "load_api", no_nixl)
    with pytest.raises(Unsupported):  # the nixl bench needs NIXL (tests/nixl/test_nixl.py runs it for real)
        run_bench(BenchConfig(backend="nixl"))
    with pytest.raises(InvalidArgument):
        run_bench(BenchConfig(count=0))


@pytest.mark.skipif(not uring_status()[0], reason="io_uring is not usable here")
def test_bench_compares_both_io_engines_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--backend", "file", "--io", "both", "--sizes", "64KiB", "--count", "2", "--rounds", "2",
            "--dir", str(tmp_path), "--json", "--quiet"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    assert [(r["op"], r["path"]) for r in rows] == [("put", "memkv-uring"), ("put", "memkv-threads"),
                                                   ("get", "memkv-uring"), ("get", "memkv-threads")]
    assert set(report["io_engines"]) == {"memkv-uring", "memkv-threads"}
    for row in rows:  # every memkv path is compared with the same raw measurements
        assert row["raw"] == next(r["raw"] for r in rows if r["op"] == row["op"])
        assert row["ratio"] == pytest.approx(row["memkv"]["gb_per_s"] / row["raw"]["gb_per_s"])
