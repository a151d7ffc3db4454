"""Running the consortium day to day: feed freshness against the contracts' SLAs, alerts,
raw-archive retention, and the contract-conformance report per partner.

Everything here reads the manifests (one outcome record per batch), so "is feed X late" and
"how often does partner Y break its contract" are answers computed from data, not log searches.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from ingest.contracts import load_contract
from ingest.landing import atomic_write
from mobility.registry import Registry, load_registry
from mobility.settings import Workdir

log = logging.getLogger(__name__)

ALERT_WEBHOOK = "MOBILITY_ALERT_WEBHOOK"  # where alerts go (chat or e-mail gateway); logs only if unset
# a batch that landed, or a check that found the partner's data unchanged (GTFS by checksum)
GOOD_OUTCOMES = ("accepted", "partial", "empty", "unchanged")


class FeedLate(RuntimeError):
    """A feed's newest good window is older than its contract allows."""


@dataclass(frozen=True)
class Freshness:
    partner_id: str
    feed: str
    latest_window_end: str | None
    lag_hours: float | None
    sla_hours: float
    late: bool

    def describe(self) -> str:
        if self.latest_window_end is None:
            return f"{self.partner_id}/{self.feed}: no batch landed yet (SLA {self.sla_hours:g} h)"
        state = "LATE" if self.late else "fresh"
        return (f"{self.partner_id}/{self.feed}: {state}, newest data ends {self.latest_window_end} "
                f"({self.lag_hours:.1f} h ago; SLA {self.sla_hours:g} h)")


def _manifests(wd: Workdir, feed: str | None = None, partner_id: str | None = None):
    pattern = f"{feed or '*'}/{partner_id or '*'}/*.json"
    for path in wd.manifests.glob(pattern):
        yield json.loads(path.read_text())


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def feed_freshness(wd: Workdir, partner_id: str, feed_kind: str, *, now: datetime,
                   registry: Registry | None = None) -> Freshness:
    """How far behind `now` the newest good window of one feed is, against its contract's SLA."""
    registry = registry or load_registry()
    contract = load_contract(registry.partner(partner_id).feed(feed_kind).contract)
    sla = contract.sla_latency_hours()
    if sla is None:
        raise ValueError(f"contract {contract.ref} states no latency SLA")
    ends = [m["window_end"] for m in _manifests(wd, feed_kind, partner_id) if m["outcome"] in GOOD_OUTCOMES]
    if not ends:
        return Freshness(partner_id, feed_kind, None, None, sla, True)
    newest = max(_parse(e) for e in ends)
    lag = (now - newest).total_seconds() / 3600
    return Freshness(partner_id, feed_kind, newest.isoformat(), round(lag, 2), sla, lag > sla)


def check_freshness(partner_id: str, feed_kind: str, now: datetime, workdir: Workdir | None = None) -> dict:
    """The Airflow task body: fail (and so alert) when the feed is later than its SLA."""
    result = feed_freshness(workdir or Workdir.resolve(), partner_id, feed_kind, now=now)
    if result.late:
        raise FeedLate(result.describe())
    return asdict(result)


def send_alert(subject: str, body: str) -> bool:
    """POST an alert to $MOBILITY_ALERT_WEBHOOK (Slack/Teams/e-mail gateway style JSON).

    Returns whether it was delivered. Without a webhook the alert is logged, so nothing is lost.
    """
    import httpx

    url = os.environ.get(ALERT_WEBHOOK)
    if not url:
        log.error("ALERT %s: %s (set %s to deliver alerts)", subject, body, ALERT_WEBHOOK)
        return False
    try:
        httpx.post(url, json={"text": f"{subject}\n{body}", "subject": subject, "body": body}, timeout=10).raise_for_status()
        return True
    except httpx.HTTPError as exc:
        log.error("ALERT %s could not be delivered to the webhook (%s): %s", subject, type(exc).__name__, body)
        return False


def alert_on_failure(context) -> None:
    """Airflow `on_failure_callback`: tell the office which task failed and why."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    send_alert(f"Mobility Commons: {dag_id}.{task_id} failed", str(exc) if exc else "see the Airflow log")


def purge_raw(wd: Workdir, *, retention_days: int, now: datetime) -> list[str]:
    """Delete raw-archive windows older than the retention limit; return what was removed.

    The bronze rows derived from them stay (pseudonymised); only the exact partner bytes go.
    """
    cutoff = now - timedelta(days=retention_days)
    removed = []
    for window_dir in sorted(wd.raw.glob("*/*/*")):
        label = window_dir.name
        try:
            start = datetime.strptime(label[:10], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            log.warning("raw archive folder %s has no date label; left in place", window_dir)
            continue
        if start + timedelta(days=1) <= cutoff:
            shutil.rmtree(window_dir)
            removed.append(str(window_dir.relative_to(wd.root)))
    return removed


def conformance_report(wd: Workdir, *, now: datetime) -> dict:
    """Per partner and feed: batches by outcome, rows landed and quarantined, the row rules broken
    (contract check) and the expectations failed (landing gate, which rejects whole batches)."""
    partners: dict[str, dict] = {}

    def entry_for(partner: str, feed: str) -> dict:
        return partners.setdefault(partner, {}).setdefault(feed, {
            "batches": Counter(), "rows_received": 0, "rows_rejected": 0,
            "rules": Counter(), "gate_expectations": Counter(),
        })

    for m in _manifests(wd):
        entry = entry_for(m["partner_id"], m["feed"])
        entry["batches"][m["outcome"]] += 1
        entry["rows_received"] += m["rows_received"]
        entry["rows_rejected"] += m["rows_rejected"]
    # quarantine/<partner>/<feed>/<batch>/: report.json from the row check, landing_gate.json from the gate
    for report in wd.quarantine.glob("*/*/*/report.json"):
        rules = entry_for(report.parts[-4], report.parts[-3])["rules"]
        for rule in json.loads(report.read_text()).get("failed_rules", []):
            rules[f"{rule['field']}: {rule['rule']}"] += rule["rows"]
    for report in wd.quarantine.glob("*/*/*/landing_gate.json"):
        failed = entry_for(report.parts[-4], report.parts[-3])["gate_expectations"]
        for f in json.loads(report.read_text()).get("failed_expectations", []):
            failed[f"{f['expectation']}({f['column']})" if f.get("column") else f["expectation"]] += 1
    for feeds in partners.values():
        for entry in feeds.values():
            received = entry["rows_received"]
            entry["conformance"] = round(1 - entry["rows_rejected"] / received, 6) if received else None
            entry["batches"] = dict(entry["batches"])
            entry["rules"] = dict(entry["rules"].most_common())
            entry["gate_expectations"] = dict(entry["gate_expectations"].most_common())  # batches failing each
    report = {"generated_at": now.isoformat(), "partners": partners}
    atomic_write(wd.root / "reports" / "conformance" / f"{now:%Y-%m-%d}.json", json.dumps(report, indent=2).encode())
    return report
