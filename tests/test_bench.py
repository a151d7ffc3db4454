"""The benchmark harness produces every figure it promises (not how fast: that is BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mobility.bench import ALL_STAGES, PIPELINE_STAGES, landing_gate_available, scale_for
from mobility.cli import app


def test_trips_per_day_maps_onto_the_simulator_scale() -> None:
    assert scale_for(8_800) == pytest.approx(1.0)
    assert scale_for(100_000) == pytest.approx(100_000 / 8_800)


def test_bench_has_help() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--workdir", "--trips-per-day", "--days", "--neighborhoods", "--growth", "--scales", "--json"):
        assert option in result.output


def _assert_complete(figure: dict) -> None:
    assert figure["wall_s"] is not None and figure["wall_s"] > 0, figure
    assert figure["process_s"] is not None and figure["process_s"] >= figure["wall_s"], figure
    assert figure["rows_per_s"] is not None and figure["rows_per_s"] > 0, figure
    assert figure["peak_rss_bytes"] is not None and figure["peak_rss_bytes"] > 10 * 1024**2, figure
    assert figure["ratio_to_floor"] is not None and figure["ratio_to_floor"] > 0, figure


@pytest.mark.slow
def test_bench_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--workdir", str(tmp_path / "w"), "--trips-per-day", "2000", "--days", "1",
        "--neighborhoods", "60", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "whole run" in result.output and "floor query" in result.output

    figures = json.loads(out.read_text())
    main = figures["main"]
    assert main["rows"] > 1_000  # about 2,000 trips in the day
    assert main["history_days"] == 1 and main["history_rows"] > 1_000
    assert set(main["stages"]) == set(ALL_STAGES)

    floor = main["stages"]["floor"]
    _assert_complete(floor)
    assert floor["ratio_to_floor"] == 1.0
    # the floor counts the same trips the pipeline landed (all but points on a shared edge)
    assert floor["detail"]["trips_counted"] >= 0.99 * main["rows"]

    for stage in PIPELINE_STAGES:
        _assert_complete(main["stages"][stage])
    gate = main["stages"]["landing_gate"]
    if landing_gate_available():
        _assert_complete(gate)
    else:
        assert not gate["available"] and gate["wall_s"] is None and "does not exist" in gate["note"]

    # dbt runs as a child of the stage's process: its peak is the children's maxrss
    dbt = main["stages"]["dbt_build"]
    assert dbt["peak_rss_children_bytes"] > 0 and dbt["detail"]["dbt_startup_s"] is not None

    e2e = main["end_to_end"]
    _assert_complete(e2e)
    assert e2e["wall_s"] == pytest.approx(sum(main["stages"][s]["process_s"] for s in PIPELINE_STAGES), abs=0.01)
    overhead = main["orchestration_overhead"]
    assert 0 < overhead["seconds"] < e2e["wall_s"]

    machine = figures["machine"]
    assert machine["cpu_count"] >= 1 and machine["memory_bytes"] > 0
    assert set(figures["targets"]) == {"e2e_1m_within_5x_floor", "incremental_flat_60_vs_7", "peak_under_4gb_at_10m"}
    assert all(t["status"] == "not measured" for t in figures["targets"].values())


@pytest.mark.slow
def test_growth_builds_the_longer_history_onto_the_previous_warehouse(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--workdir", str(tmp_path / "w"), "--trips-per-day", "2000", "--days", "1",
        "--growth", "1,2", "--neighborhoods", "60", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output

    runs = json.loads(out.read_text())["runs"]
    assert [r["history_days"] for r in runs] == [1, 2]
    # the same measured day each time, on one more day of history
    assert runs[0]["rows"] == runs[1]["rows"] > 1_000
    assert runs[1]["history_rows"] > runs[0]["history_rows"] > 1_000
    for run in runs:
        for stage in PIPELINE_STAGES:
            _assert_complete(run["stages"][stage])
    # the second history length was built onto the state kept before the first measured day, and
    # the state kept before the second one is there for the next length
    assert runs[1]["history_setup"]["days"] == 1  # only the one older day was landed and built
    kept = tmp_path / "w" / "bench" / "tpd-2000" / "built-before-measured-day"
    assert (kept / "warehouse" / "mobility.duckdb").exists() and (kept / "published").is_dir()
