"""What people read: feed health from the manifests, gate and publication state, run summaries."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Group
from rich.table import Table

from mobility.settings import Workdir


def _latest_json(folder: Path) -> dict | None:
    files = sorted(folder.glob("*.json"))
    return json.loads(files[-1].read_text()) if files else None


def collect_status(wd: Workdir) -> dict:
    feeds: dict[tuple[str, str], dict] = defaultdict(lambda: {"outcomes": Counter(), "rows_accepted": 0, "rows_rejected": 0, "last_window": None, "last_error": None})
    for path in wd.manifests.glob("*/*/*.json"):
        m = json.loads(path.read_text())
        entry = feeds[(m["partner_id"], m["feed"])]
        entry["outcomes"][m["outcome"]] += 1
        entry["rows_accepted"] += m["rows_accepted"]
        entry["rows_rejected"] += m["rows_rejected"]
        if m["outcome"] in ("accepted", "partial", "empty") and (entry["last_window"] or "") < m["window_start"]:
            entry["last_window"] = m["window_start"]
        if m["outcome"] in ("rejected", "error"):
            entry["last_error"] = m["error"]
    publication = wd.published / "publication.json"
    return {
        "workdir": str(wd.root),
        "feeds": {f"{p}/{f}": {**v, "outcomes": dict(v["outcomes"])} for (p, f), v in sorted(feeds.items())},
        "last_gate": _latest_json(wd.gates / "publish"),
        "landing_gate": _landing_gate_status(wd.gates / "landing"),
        "data_docs": str(wd.gates / "data_docs" / "index.html") if (wd.gates / "data_docs").exists() else None,
        "publication": json.loads(publication.read_text()) if publication.exists() else None,
        "published_db": str(wd.published_db) if wd.published_db.exists() else None,
    }


def _landing_gate_status(folder: Path) -> dict | None:
    """Landing gate results (one JSON per batch): how many, how many failed, the newest failure."""
    results = [json.loads(p.read_text()) for p in folder.glob("*/*/*.json")]
    if not results:
        return None
    failures = sorted((r for r in results if not r.get("success")), key=lambda r: r.get("run_at", ""))
    return {"batches": len(results), "failed": len(failures), "last_failure": failures[-1] if failures else None}


def format_status(status: dict) -> Group:
    table = Table("partner/feed", "batches", "accepted", "partial", "rejected", "errors", "rows landed", "rows quarantined", "latest good window", title="Feed health")
    for key, v in status["feeds"].items():
        o = v["outcomes"]
        table.add_row(key, str(sum(o.values())), str(o.get("accepted", 0)), str(o.get("partial", 0)),
                      str(o.get("rejected", 0)), str(o.get("error", 0)), f"{v['rows_accepted']:,}",
                      f"{v['rows_rejected']:,}", v["last_window"] or "-")
    gate = status["last_gate"]
    lines = [table]
    if gate:
        verdict = "PASSED" if gate.get("success") else "FAILED"
        lines.append(f"Publish gate: {verdict} at {gate.get('run_at', '?')} ({gate.get('expectations', '?')} expectations)")
        lines += [f"  failed: {f}" for f in gate.get("failed", [])[:5]]
        lines += [f"  note: {n}" for n in gate.get("notes", [])]
    else:
        lines.append("Publish gate: not run yet")
    landing = status.get("landing_gate")
    if landing:
        lines.append(f"Landing gate: {landing['batches']} batches gated, {landing['failed']} rejected")
        last = landing["last_failure"]
        if last:
            lines.append(f"  last rejection {last.get('run_at', '?')}: {'; '.join(last.get('failed', [])[:3])}")
    else:
        lines.append("Landing gate: no batch gated yet")
    lines.append(f"Data Docs: {status['data_docs'] or 'not built yet'}")
    pub = status["publication"]
    lines.append(f"Published warehouse: {status['published_db']} (published {pub.get('published_at')})" if pub else "Published warehouse: none yet")
    return Group(*lines)


def format_ingest_summary(s: dict) -> str:
    text = (f"{s['feed']}: {s['batches']} batches from {', '.join(s['partners'])}; outcomes {s['outcomes']}; "
            f"rows received {s['rows_received']:,}, landed {s['rows_accepted']:,}, quarantined {s['rows_rejected']:,}")
    if s["failed"]:
        text += "\nFailures:\n  " + "\n  ".join(s["failed"][:20])
    return text


def format_build_summary(r: dict) -> str:
    b = r["build"]
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(b["statuses"].items()))
    lines = [f"dbt build: {'ok' if b['success'] else 'FAILED'}, {b['nodes']} nodes ({statuses}) in {b['elapsed_s']} s"]
    gate = r.get("gate")
    if gate is not None:
        verdict = "passed" if gate.get("success") else "FAILED"
        detail = gate.get("message") or ""
        lines.append(f"publish gate: {verdict}" + (f": {detail}" if detail and not gate.get("success") else ""))
    pub = r.get("publication")
    if pub:
        tables = ", ".join(f"{t} ({n:,} rows)" for t, n in pub["tables"].items())
        lines.append(f"published (k = {pub['k']}): {tables}")
    elif gate is not None:
        lines.append("published: nothing new; the last good publication stays in place")
    return "\n".join(lines)


def format_demo_summary(r: dict) -> Group:
    ing = r["ingest"]
    lines = [
        f"[bold]Mobility Commons demo[/bold] ({r['seconds']} s): {r['period'][0][:10]} to {r['period'][1][:10]}, workdir {r['workdir']}",
        f"City: {r['city'].name}, {r['city'].n_neighborhoods} neighborhoods, {r['city'].population_total:,} residents",
        f"Partners pulled: {', '.join(ing['partners'])} ({ing['feed']})",
        f"Batches: {ing['batches']} {ing['outcomes']}; rows received {ing['rows_received']:,}, "
        f"landed {ing['rows_accepted']:,}, quarantined {ing['rows_rejected']:,}",
        format_build_summary(r["build"]),
        f"Published warehouse: {r['published']}",
    ]
    if r["example_answer"]:
        t = Table(*r["example_answer"]["columns"], title="Example: trips per 1,000 residents, equity zones vs the rest")
        for row in r["example_answer"]["rows"]:
            t.add_row(*(str(v) for v in row))
        lines += [f"Example query:\n{r['example_query']}", t]
    if ing["failed"]:
        lines.append("[red]Failures:[/red]\n  " + "\n  ".join(ing["failed"][:20]))
    return Group(*lines)
