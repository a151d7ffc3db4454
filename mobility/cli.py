"""`mobility`: the one entry point for everything a person does with the consortium.

Every command takes `--workdir DIR` for all it reads and writes (default: ./var, or
$MOBILITY_WORKDIR). Heavy libraries are imported inside commands so `--help` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mobility.settings import Workdir

app = typer.Typer(help="Mobility Commons: shared mobility data under contract, neighborhood metrics with an equity lens.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
city_app = typer.Typer(help="Make or load the city: neighborhoods, demographics, transit network.", no_args_is_help=True)
partners_app = typer.Typer(help="The consortium's partners: list them, or run the local partner simulator.", no_args_is_help=True)
app.add_typer(city_app, name="city")
app.add_typer(partners_app, name="partners")


def _register_airflow() -> None:
    from mobility.cli_airflow import app as airflow_app  # light: Airflow is imported inside its commands

    app.add_typer(airflow_app, name="airflow")

console = Console(stderr=True)
out = Console()

WorkdirOpt = Annotated[
    Optional[Path],
    typer.Option("--workdir", "-w", help="Folder for everything this command reads and writes (default: ./var or $MOBILITY_WORKDIR)."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")]


def _setup(workdir: Optional[Path], verbose: bool = False) -> Workdir:
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)  # filter at the handler: some libraries (GX) force INFO on their loggers
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])
    wd = Workdir.resolve(workdir)
    wd.root.mkdir(parents=True, exist_ok=True)
    os.environ.update(wd.env())
    return wd


def _parse_day(value: str) -> datetime:
    return datetime.combine(date.fromisoformat(value), time(0), tzinfo=timezone.utc)


def _parse_hour(value: str) -> datetime:
    """Accept YYYY-MM-DD or YYYY-MM-DDTHH (UTC)."""
    if "T" in value:
        return datetime.strptime(value[:13], "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    return _parse_day(value)


# --- city -------------------------------------------------------------------------------------

@city_app.command("generate")
def city_generate(
    workdir: WorkdirOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same city.")] = 7,
    neighborhoods: Annotated[int, typer.Option(help="Number of neighborhoods (60 to 120).")] = 80,
    verbose: VerboseOpt = False,
) -> None:
    """Generate a deterministic synthetic city (irregular neighborhoods, demographics, transit)."""
    from mobility.city.generate import generate_city

    wd = _setup(workdir, verbose)
    info = generate_city(wd, seed=seed, n_neighborhoods=neighborhoods)
    out.print(f"city written to {wd.city}: {info}")


@city_app.command("load")
def city_load(
    geojson: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection of neighborhood polygons (WGS84).")],
    id_field: Annotated[str, typer.Option(help="Feature property holding the neighborhood id.")],
    name_field: Annotated[str, typer.Option(help="Feature property holding the name.")],
    population_field: Annotated[str, typer.Option(help="Property (or demographics column) with residents.")],
    income_field: Annotated[str, typer.Option(help="Property (or demographics column) with income.")],
    income_measure: Annotated[str, typer.Option(help="What the income figure is, e.g. median_household_income.")] = "median_household_income",
    demographics: Annotated[Optional[Path], typer.Option(help="CSV of demographics to join on --join-field.")] = None,
    join_field: Annotated[Optional[str], typer.Option(help="Demographics column matching --id-field.")] = None,
    timezone_name: Annotated[str, typer.Option("--timezone", help="The city's time zone.")] = "America/Chicago",
    workdir: WorkdirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Load a real city from a GeoJSON of polygons and an optional demographics table."""
    from mobility.city.load import load_city

    wd = _setup(workdir, verbose)
    info = load_city(
        wd, geojson, demographics, id_field=id_field, name_field=name_field,
        population_field=population_field, income_field=income_field,
        income_measure=income_measure, join_field=join_field, timezone=timezone_name,
    )
    out.print(f"city written to {wd.city}: {info}")


@city_app.command("chicago")
def city_chicago(
    shared_data: Annotated[Path, typer.Option(help="The shared data folder holding geo/chicago-community-areas/.")] = Path("../shared/data"),
    workdir: WorkdirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Load Chicago's 77 community areas with per-capita income (a real-city preset)."""
    from mobility.city.load import load_chicago

    wd = _setup(workdir, verbose)
    info = load_chicago(wd, shared_data)
    out.print(f"city written to {wd.city}: {info}")


# --- partners ---------------------------------------------------------------------------------

@partners_app.command("list")
def partners_list(
    workdir: WorkdirOpt = None,
    registry: Annotated[Optional[Path], typer.Option(help="Registry file (default: partners.yaml).")] = None,
) -> None:
    """List partners and feeds from the registry (validating it)."""
    from mobility.registry import RegistryError, load_registry

    _setup(workdir)
    try:
        reg = load_registry(registry)
    except RegistryError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table("partner", "kind", "feed", "protocol", "schedule", "contract", "credential")
    for p, f in reg.feeds():
        table.add_row(p.id, p.kind, f.feed, f.protocol, f.schedule, f.contract, f.credential or "-")
    out.print(table)


@partners_app.command("serve")
def partners_serve(
    workdir: WorkdirOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    seed: Annotated[int, typer.Option(help="World seed (trips, fleets).")] = 7,
    scale: Annotated[float, typer.Option(help="Multiply every operator's trip volume.")] = 1.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run the local partner simulator (MDS 2.0, GBFS 2.3/3.0, GTFS) in the foreground."""
    from mobility.simulator.server import serve

    wd = _setup(workdir, verbose)
    if not wd.neighborhoods.exists():
        raise typer.BadParameter(f"no city in {wd.city}: run `mobility city generate` first", param_hint="--workdir")
    serve(wd, host=host, port=port, seed=seed, scale=scale)


# --- pipeline ---------------------------------------------------------------------------------

@app.command()
def ingest(
    start: Annotated[str, typer.Option(help="First UTC hour, YYYY-MM-DD or YYYY-MM-DDTHH.")],
    end: Annotated[str, typer.Option(help="End (exclusive), YYYY-MM-DD or YYYY-MM-DDTHH.")],
    partner: Annotated[Optional[list[str]], typer.Option(help="Partner id (repeatable; default: every partner with the feed).")] = None,
    feed: Annotated[str, typer.Option(help="Feed kind.")] = "mds_trips",
    workdir: WorkdirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Pull hourly MDS windows from partners and land them under contract."""
    from mobility.pipeline import ingest_range
    from mobility.report import format_ingest_summary

    wd = _setup(workdir, verbose)
    summary = ingest_range(wd, _parse_hour(start), _parse_hour(end), partners=partner, feed=feed)
    out.print(format_ingest_summary(summary))
    if summary["failed"]:
        raise typer.Exit(1)


@app.command()
def build(
    workdir: WorkdirOpt = None,
    publish: Annotated[bool, typer.Option(help="Run the publish gate and publish if it passes.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Build the warehouse with dbt, gate the marts, and publish the analyst warehouse."""
    from mobility.pipeline import build_and_publish
    from mobility.report import format_build_summary

    wd = _setup(workdir, verbose)
    result = build_and_publish(wd, publish=publish)
    out.print(format_build_summary(result))
    if not result["ok"]:
        raise typer.Exit(1)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run on the published warehouse (read-only).")],
    workdir: WorkdirOpt = None,
    internal: Annotated[bool, typer.Option(help="Query the restricted internal warehouse instead (city staff only).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Run SQL on the published analyst warehouse."""
    import duckdb

    wd = _setup(workdir)
    path = wd.warehouse if internal else wd.published_db
    if not path.exists():
        console.print(f"[red]no warehouse at {path}: run `mobility demo` or `mobility build` first[/red]")
        raise typer.Exit(2)
    with duckdb.connect(str(path), read_only=True) as con:
        try:
            rel = con.sql(sql)
        except duckdb.Error as exc:
            console.print(f"[red]query failed: {exc}[/red]")
            raise typer.Exit(1) from None
        if rel is None:
            return
        cols, rows = rel.columns, rel.fetchall()
    if fmt == "json":
        out.print_json(json.dumps([dict(zip(cols, r)) for r in rows], default=str))
    elif fmt == "csv":
        import csv, sys
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        table = Table(*cols)
        for r in rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        out.print(table)


@app.command("privacy-scan")
def privacy_scan(
    folder: Annotated[Optional[Path], typer.Argument(help="A publication folder, or one partner's export folder (default: DIR/published).")] = None,
    k: Annotated[Optional[int], typer.Option(help="Smallest publishable count (default: the one the publication records).")] = None,
    bronze: Annotated[Optional[Path], typer.Option(help="Bronze lake whose ids must not appear (default: the workdir's).")] = None,
    city: Annotated[Optional[Path], typer.Option(help="city.json for the bounding box and time zone (default: the workdir's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workdir: WorkdirOpt = None,
) -> None:
    """Scan every table and column of a publication for ids, fine coordinates and times, small counts
    and other partners' detail; exit 1 on any finding."""
    from mobility.warehouse.privacy_scan import ScanError, scan_publication

    wd = _setup(workdir)
    try:
        report = scan_publication(folder or wd.published, k=k, bronze=bronze, city=city)
    except ScanError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if json_out:
        out.print_json(json.dumps(report.summary(), default=str))
    else:
        for note in report.notes:
            console.print(f"note: {note}")
        for finding in report.findings:
            out.print(finding.describe(), markup=False, soft_wrap=True)
        verdict = "no findings" if report.ok else f"{len(report.findings)} finding(s)"
        out.print(f"privacy scan of {report.root}: {len(report.tables)} table(s), {report.columns} column(s), {verdict}",
                  markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def status(workdir: WorkdirOpt = None) -> None:
    """Feed health and the state of the last build, gate and publication."""
    from mobility.report import collect_status, format_status

    wd = _setup(workdir)
    out.print(format_status(collect_status(wd)))


@app.command()
def demo(
    workdir: WorkdirOpt = None,
    start: Annotated[str, typer.Option(help="First simulated day, a local date in the consortium's time zone.")] = "2026-11-02",
    days: Annotated[int, typer.Option(help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Seed for the city and the partners' world.")] = 7,
    neighborhoods: Annotated[int, typer.Option(help="Neighborhoods in the generated city.")] = 80,
    scale: Annotated[float, typer.Option(help="Multiply every operator's trip volume.")] = 1.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run the demo consortium end to end: city, simulator, ingest, dbt, gate, publish."""
    from zoneinfo import ZoneInfo

    from mobility.demo import run_demo
    from mobility.registry import load_registry
    from mobility.report import format_demo_summary

    wd = _setup(workdir, verbose)
    # Simulate whole local days: the marts count by the city's calendar day.
    tz = ZoneInfo(load_registry().consortium.timezone)
    first_day = date.fromisoformat(start)
    first = datetime.combine(first_day, time(0), tzinfo=tz).astimezone(timezone.utc)
    last = datetime.combine(first_day + timedelta(days=days), time(0), tzinfo=tz).astimezone(timezone.utc)
    result = run_demo(wd, start=first, end=last, seed=seed, n_neighborhoods=neighborhoods, scale=scale)
    out.print(format_demo_summary(result))
    if not result["ok"]:
        raise typer.Exit(1)


def _int_list(value: Optional[str], option: str) -> Optional[list[int]]:
    if not value:
        return None
    try:
        return [int(v.replace("_", "")) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"a comma-separated list of integers, got {value!r}", param_hint=option) from None


@app.command()
def bench(
    workdir: WorkdirOpt = None,
    trips_per_day: Annotated[int, typer.Option(help="Trips per day across the MDS scooter operators.")] = 100_000,
    days: Annotated[int, typer.Option(help="Days of history before the measured day.")] = 3,
    neighborhoods: Annotated[int, typer.Option(help="Neighborhoods in the generated city (60 to 120).")] = 80,
    day: Annotated[str, typer.Option(help="The measured local day (a past weekday).")] = "2026-11-18",
    seed: Annotated[int, typer.Option(help="Seed for the city and the partners' world.")] = 7,
    growth: Annotated[Optional[str], typer.Option(help="Also run the day with these history lengths, e.g. 7,30,60.")] = None,
    scales: Annotated[Optional[str], typer.Option(help="Also run the whole day at these trips/day, e.g. 1000000,10000000.")] = None,
    gate_history: Annotated[bool, typer.Option(help="Run the landing gate on history batches too (slower set-up).")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every figure as JSON here.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Time each pipeline stage on one day of data against a one-query floor, as data grows.

    Writes under DIR/bench/ (wiped per volume); never touches the demo's lake or warehouse.
    """
    import sys

    from mobility.bench import render, run_bench

    wd = _setup(workdir, verbose)
    try:
        result = run_bench(
            wd.root / "bench", trips_per_day=trips_per_day, days=days, neighborhoods=neighborhoods,
            day=date.fromisoformat(day), seed=seed, growth=_int_list(growth, "--growth"),
            scales=_int_list(scales, "--scales"), gate_history=gate_history,
            command=" ".join(["mobility", *sys.argv[1:]]),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for renderable in render(result):
        out.print(renderable)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str))
        out.print(f"figures written to {json_path}")


# --- validate, contracts ---------------------------------------------------------------------

class OutputFormat(str, Enum):
    text = "text"
    json = "json"


contracts_app = typer.Typer(help="The data contracts: compare versions for compatibility.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


@app.command("validate")
def validate_cmd(
    path: Annotated[Path, typer.Argument(help="A file (MDS or GBFS JSON, GTFS zip, CSV drop) or a folder (GTFS feed, GBFS files).")],
    contract: Annotated[Optional[str], typer.Option("--contract", "-c", help="NAME[@VERSION] of the contract; recognised from the input when omitted.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="text for people, json for tools.")] = OutputFormat.text,
    reference_schemas: Annotated[Optional[Path], typer.Option(help="Folder of the official schemas (default: $MOBILITY_REFERENCE_SCHEMAS, else ../shared/data).")] = None,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", "-w", help="A workdir with a loaded city, for rules that check codes (neighborhood ids).")] = None,
) -> None:
    """Check a feed before sending it, with the city's landing checks and the reference rules.

    Exit code 0: valid (warnings allowed); 1: invalid; 2: usage error (no such file, unknown contract).
    """
    from ingest.validate import UsageError, validate

    try:
        report = validate(path, contract, reference_root=reference_schemas, city_workdir=workdir)
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # plain echo, not rich: the report holds brackets and JSON that markup would alter
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str) if output is OutputFormat.json else report.to_text())
    raise typer.Exit(report.exit_code)


@contracts_app.command("diff")
def contracts_diff(
    old: Annotated[str, typer.Argument(help="The old contract: NAME@VERSION or a .odcs.yaml path.")],
    new: Annotated[str, typer.Argument(help="The new contract: NAME@VERSION or a .odcs.yaml path.")],
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="text or json.")] = OutputFormat.text,
) -> None:
    """Say which changes between two contract versions break partners' data.

    Exit code 0: compatible, or breaking with a new major version; 1: breaking without a major
    bump (or changed without a version increase); 2: a contract not found.
    """
    from ingest.contract_diff import DiffUsageError, diff

    try:
        result = diff(old, new)
    except DiffUsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if output is OutputFormat.json else result.to_text())
    raise typer.Exit(0 if result.ok else 1)


_register_airflow()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
