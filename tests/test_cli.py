"""The `mobility` CLI: help everywhere, the same --workdir on every command, clear errors."""

import pytest
from typer.testing import CliRunner

from mobility.cli import app

runner = CliRunner()

COMMANDS = [
    [], ["demo"], ["city"], ["city", "generate"], ["city", "load"], ["city", "chicago"],
    ["partners"], ["partners", "list"], ["partners", "serve"], ["ingest"], ["build"], ["query"],
    ["status"], ["bench"], ["airflow"], ["airflow", "init"], ["airflow", "standalone"], ["airflow", "run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mobility")
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    leaf = command and command[-1] not in ("city", "partners", "airflow")
    if leaf:
        assert "--workdir" in result.output


def test_partners_list_shows_the_registry():
    result = runner.invoke(app, ["partners", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "scootco" in result.output and "gtfs_schedule" in result.output


def test_query_without_a_warehouse_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["query", "--workdir", str(tmp_path), "select 1"])
    assert result.exit_code == 2
    assert "mobility demo" in result.output


def test_city_generate_then_query_is_refused_writes(tmp_path):
    import duckdb

    result = runner.invoke(app, ["city", "generate", "--workdir", str(tmp_path), "--neighborhoods", "60", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "city" / "neighborhoods.parquet").exists()
    published = tmp_path / "published" / "mobility.duckdb"
    published.parent.mkdir()
    with duckdb.connect(str(published)) as con:
        con.execute("create table t as select 1 as x")
    ok = runner.invoke(app, ["query", "--workdir", str(tmp_path), "select x from t", "--format", "csv"])
    assert ok.exit_code == 0 and ok.output.splitlines() == ["x", "1"]
    denied = runner.invoke(app, ["query", "--workdir", str(tmp_path), "drop table t"])
    assert denied.exit_code == 1 and "read-only" in denied.output.lower()


def test_malformed_registry_is_reported_not_a_traceback(tmp_path):
    bad = tmp_path / "partners.yaml"
    bad.write_text("consortium: {name: x}\npartners:\n  - id: Bad Id\n")
    result = runner.invoke(app, ["partners", "list", "--registry", str(bad)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"{bad}: partner 'Bad Id', field 'id'" in result.output
