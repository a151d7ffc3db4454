"""The steps a consortium run is made of. The CLI, the demo and the Airflow tasks call these,
so a step behaves the same whether a person or the scheduler runs it."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from ingest.connectors.base import FeedError, NoData, NotReady, Transient
from ingest.connectors.mds import MdsClient, MdsSettings
from ingest.contracts import load_contract
from ingest.landing import Window, land_batch, record_fetch_error
from mobility.registry import Registry, load_registry
from mobility.secrets import get_secret
from mobility.settings import Workdir

log = logging.getLogger(__name__)

HOURLY_MDS_FEEDS = ("mds_trips",)


def hours(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour start in [start, end)."""
    start = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while start < end:
        out.append(start)
        start += timedelta(hours=1)
    return out


def ingest_mds_hour(
    workdir: Workdir,
    partner_id: str,
    feed_kind: str,
    hour: datetime,
    *,
    registry: Registry | None = None,
    not_ready_waits: tuple[float, ...] = (),
) -> dict:
    """Pull one UTC hour of an MDS feed from one partner and land it; returns the manifest.

    A 202 (still processing) is retried after each wait in `not_ready_waits`, then raised as
    `NotReady` so the scheduler retries later. Faults that outlive the client's retries are
    recorded as an `error` outcome and raised.
    """
    registry = registry or load_registry()
    partner = registry.partner(partner_id)
    feed = partner.feed(feed_kind)
    contract = load_contract(feed.contract)
    window = Window.hour(hour)
    settings = MdsSettings(base_url=feed.endpoint_url(), token=get_secret(feed.credential))
    fetch = {"mds_trips": MdsClient.trips, "mds_events": MdsClient.events}[feed_kind]
    with MdsClient(settings) as client:
        for wait in (*not_ready_waits, None):
            try:
                fetched = fetch(client, window.start)
                break
            except NotReady:
                if wait is None:
                    raise
                time.sleep(wait)
            except NoData as exc:
                return record_fetch_error(
                    workdir, partner=partner, feed=feed, contract=contract, window=window,
                    error=str(exc), outcome="no_data",
                )
            except (Transient, FeedError) as exc:
                record_fetch_error(workdir, partner=partner, feed=feed, contract=contract, window=window, error=str(exc))
                raise
    return land_batch(
        workdir, partner=partner, feed=feed, contract=contract, window=window,
        raw=fetched.content, source=fetched.url,
    )


# Ingest steps by feed kind; the Airflow DAGs and `mobility ingest` find them here.
INGEST_STEPS = {"mds_trips": ingest_mds_hour}

FAILED_OUTCOMES = ("rejected", "error")


class BatchRejected(RuntimeError):
    """A batch broke its contract; it is quarantined and a report is waiting for the partner."""


def ingest_window_or_fail(partner_id: str, feed_kind: str, window_start: datetime, workdir: Workdir | None = None) -> dict:
    """The Airflow task body: land one window, fail loudly if the batch was rejected."""
    wd = workdir or Workdir.resolve()
    manifest = INGEST_STEPS[feed_kind](wd, partner_id, feed_kind, window_start)
    if manifest["outcome"] in FAILED_OUTCOMES:
        report = wd.quarantine / partner_id / feed_kind
        raise BatchRejected(f"{manifest['batch_id']}: {manifest['error']} (report under {report})")
    return {k: manifest[k] for k in ("batch_id", "outcome", "rows_received", "rows_accepted", "rows_rejected")}


def ingest_range(
    workdir: Workdir,
    start: datetime,
    end: datetime,
    *,
    partners: list[str] | None = None,
    feed: str = "mds_trips",
    workers: int = 4,
    progress: bool = True,
) -> dict:
    """Land every hour in [start, end) of `feed` from each partner, in parallel, with progress."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rich.progress import Progress

    registry = load_registry()
    pairs = [(p.id, f.feed) for p, f in registry.feeds(feed) if not partners or p.id in partners]
    if not pairs:
        raise ValueError(f"no partner in the registry has feed '{feed}'" + (f" among {partners}" if partners else ""))
    jobs = [(pid, kind, h) for pid, kind in pairs for h in hours(start, end)]
    manifests: list[dict] = []
    failures: list[str] = []
    with Progress(disable=not progress, transient=True) as bar, ThreadPoolExecutor(workers) as pool:
        task_id = bar.add_task(f"ingest {feed}", total=len(jobs))
        futures = {
            pool.submit(ingest_mds_hour, workdir, pid, kind, h, registry=registry, not_ready_waits=(1, 2, 4)): (pid, h)
            for pid, kind, h in jobs
        }
        for fut in as_completed(futures):
            pid, h = futures[fut]
            try:
                manifests.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - every failure is reported, none is swallowed
                failures.append(f"{pid} {h:%Y-%m-%dT%H}: {exc}")
            bar.advance(task_id)
    failed = [m for m in manifests if m["outcome"] in FAILED_OUTCOMES]
    failures += [f"{m['batch_id']}: {m['error']}" for m in failed]
    return {
        "feed": feed,
        "partners": sorted({p for p, _ in pairs}),
        "batches": len(manifests),
        "outcomes": {o: sum(m["outcome"] == o for m in manifests) for o in sorted({m["outcome"] for m in manifests})},
        "rows_received": sum(m["rows_received"] for m in manifests),
        "rows_accepted": sum(m["rows_accepted"] for m in manifests),
        "rows_rejected": sum(m["rows_rejected"] for m in manifests),
        "failed": failures,
    }


def build_warehouse(workdir: Workdir | None = None) -> dict:
    """dbt build (models and their tests) into the warehouse; the single writer."""
    from mobility.warehouse.build import run_dbt

    import json

    wd = workdir or Workdir.resolve()
    # local days and hours follow the city's own time zone (city.json), whatever city is loaded
    timezone_name = json.loads(wd.city_meta.read_text())["timezone"]
    return run_dbt(wd, args=("build",), vars={"city_timezone": timezone_name}).summary()


def gate_marts(workdir: Workdir | None = None, *, enforce: bool = True) -> dict:
    """The Great Expectations publish gate on the marts; raises GateFailed when enforcing."""
    from mobility.gates.publish_gate import run_publish_gate

    wd = workdir or Workdir.resolve()
    result = run_publish_gate(wd, k=load_registry().consortium.k_anonymity, enforce=enforce)
    return result.summary()


def publish_marts(workdir: Workdir | None = None) -> dict:
    """Atomically replace the analyst warehouse with the gated marts (k-suppressed)."""
    from mobility.warehouse.publish import publish

    wd = workdir or Workdir.resolve()
    return publish(wd, k=load_registry().consortium.k_anonymity).summary()


def build_and_publish(workdir: Workdir, *, publish: bool = True) -> dict:
    """Build, gate, publish; the gate's failure keeps the last good publication in place."""
    from mobility.gates.publish_gate import GateFailed

    result: dict = {"ok": False, "build": None, "gate": None, "publication": None}
    result["build"] = build_warehouse(workdir)
    if not publish:
        result["ok"] = True
        return result
    try:
        result["gate"] = gate_marts(workdir, enforce=True)
    except GateFailed as exc:
        result["gate"] = {"success": False, "message": str(exc)}
        return result
    result["publication"] = publish_marts(workdir)
    result["ok"] = True
    return result
