"""The ingest throughput benchmark runs at a tiny scale and reports every figure (not how fast)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ingest_throughput", ROOT / "benchmarks" / "ingest_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_benchmark_reports_every_figure(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    out = tmp_path / "bench.json"
    report = bench.main(["--rows", "2000", "--page-rows", "1000", "--fault-rate", "0.01",
                         "--json", str(out), "--scratch", str(tmp_path / "scratch")])
    assert json.loads(out.read_text()) == report
    assert report["machine"]["cpus"] and len(report["machine"]["load_average_start"]) == 3
    cases = {r["case"]: r for r in report["cases"]}
    assert set(cases) == set(bench.CASES)
    for r in cases.values():
        assert r["rows"] == 2000 and r["rows_accepted"] + r["rows_rejected"] == 2000
        assert r["rows_rejected"] > 0 or r["case"] == "csv_floor"  # the planted faults were found; the floor checks no rule
        assert r["wall_s"] > 0 and r["rows_per_s"] > 0 and r["peak_rss_mb"] >= r["rss_before_mb"] > 0
        assert r["cpu_s"] > 0 and r["rows_per_cpu_s"] > 0
        # sampled: the processes' private memory summed, library pages once, so under their summed
        # peaks (give or take the kernel's per-thread counters, which lag by up to 64 pages each)
        assert 0 < r["peak_footprint_mb"] <= r["peak_rss_mb"] + (r["worker_peak_rss_mb"] or 0) + 5
    assert cases["csv_validate"]["path_or_outcome"] == ["columnar"] == cases["mds_validate"]["path_or_outcome"]
    assert cases["mds_validate"]["batches"] == 2 and cases["csv_validate"]["batches"] == 1
    # the warm-up started a check worker for CSV (JSON is never checked in one)
    assert cases["csv_land"]["worker_peak_rss_mb"] > 0 and cases["csv_land"]["worker_cpu_s"] >= 0
    assert cases["mds_land"]["worker_cpu_s"] is None
    # the pages shared among processes landed side by side: all of them, once
    parallel = cases["mds_land_parallel"]
    assert parallel["processes"] >= 1 and len(parallel["peak_rss_mb_each"]) == parallel["processes"]
    assert parallel["batches"] == 2 and parallel["rows_accepted"] == cases["mds_land"]["rows_accepted"]
    for case in ("csv_land", "mds_land", "mds_land_parallel"):
        assert cases[case]["gate_s"] > 0 and cases[case]["path_or_outcome"] == ["partial"]
        assert cases[case]["rows_accepted"] == cases[case.split("_")[0] + "_validate"]["rows_accepted"]
    # the floor timed each step no landing can skip, and bounds the rate by their CPU seconds
    floor = cases["csv_floor"]
    assert set(floor["steps_cpu_s"]) == {"checksum", "raw_archive", "parse_typed", "keyed_hash", "parquet_write"}
    assert floor["cpu_s"] == pytest.approx(sum(floor["steps_cpu_s"].values()), abs=0.01)
    assert floor["ceiling_rows_per_s"] == pytest.approx(2000 * floor["cpus"] / floor["cpu_s"], rel=0.01)
    assert floor["budget_cpu_s"] == pytest.approx(2000 * floor["cpus"] / bench.TARGET_CSV_ROWS_PER_S)
    assert "steps no landing can skip" in bench.table(report)
    # the landed bronze holds exactly the accepted rows
    import pyarrow.parquet as pq

    bronze = tmp_path / "scratch" / "wd-mds_land" / "lake" / "bronze" / "mds_trips"
    assert pq.read_table(bronze).num_rows == cases["mds_land"]["rows_accepted"]
    shares = (tmp_path / "scratch" / "wd-mds_land_parallel").glob("p*/lake/bronze/mds_trips")
    assert sum(pq.read_table(b).num_rows for b in shares) == parallel["rows_accepted"]
    assert "| csv_validate |" in bench.table(report)


def test_repeated_runs_are_summarised_and_the_data_is_kept_for_them(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MOBILITY_PSEUDONYM_KEY", "test-key")
    scratch = tmp_path / "scratch"
    args = ["--rows", "1000", "--page-rows", "500", "--cases", "csv_validate,mds_validate", "--scratch", str(scratch)]
    first = bench.main(args)
    assert "generated in" in capsys.readouterr().out
    made = {p.name: p.stat().st_mtime_ns for p in (scratch / "data").iterdir()}

    report = bench.main(args + ["--repeat", "2"])
    out = capsys.readouterr().out
    assert "kept from an earlier run" in out  # the same sizes: the files were not written again
    assert {p.name: p.stat().st_mtime_ns for p in (scratch / "data").iterdir()} == made
    # the cases ran in turn, each twice, on the same rows as before
    assert [(r["case"], r["run"]) for r in report["cases"]] == [
        ("csv_validate", 1), ("mds_validate", 1), ("csv_validate", 2), ("mds_validate", 2)]
    assert all(r["rows_rejected"] == next(f["rows_rejected"] for f in first["cases"] if f["case"] == r["case"])
               for r in report["cases"])
    for s in report["summary"]:
        speeds = sorted(r["rows_per_s"] for r in report["cases"] if r["case"] == s["case"])
        assert s["runs"] == 2 and (s["rows_per_s_min"], s["rows_per_s_max"]) == (speeds[0], speeds[-1])
        assert s["rows_per_s_median"] == round(sum(speeds) / 2)
    assert "| median rows/s |" in out

    bench.main(args[:1] + ["1200"] + args[2:])  # other sizes: generated anew
    assert "generated in" in capsys.readouterr().out
    assert json.loads((scratch / "data" / "meta.json").read_text())["rows"] == 1200


def test_the_footprint_counts_every_process_of_a_case_and_their_libraries_once(tmp_path) -> None:
    """A child and the grandchild it starts each hold 100 MB of their own and map the same 100 MB
    file (as processes map the same libraries): the footprint has both processes' own memory and
    the file's pages once (about 300 MB), where summed RSS would count the file twice (400)."""
    import subprocess
    import sys

    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"x" * (100 << 20))
    holder = (f"import mmap, time; own = bytearray(100 << 20); own[::4096] = b'x' * len(own[::4096]); "
              f"f = open({str(shared)!r}, 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); "
              f"sum(m[i] for i in range(0, len(m), 4096)); time.sleep(3)")
    child = f"import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', {holder!r}]); {holder}; g.wait()"
    proc = subprocess.Popen([sys.executable, "-c", child])
    footprint = bench.Footprint([proc.pid])
    footprint.start()
    proc.wait()
    assert 300 <= footprint.stop() < 360
