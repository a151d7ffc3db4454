"""Run dbt on the warehouse, in a child process, and turn failures into a clear error.

Why a subprocess rather than ``dbtRunner`` in this process: dbt-duckdb keeps its DuckDB
connection in a process-wide singleton (``DuckDBConnectionManager._ENV``) after the invocation
returns, so the warehouse file stays locked against every other process and cannot be reopened
here with another configuration (``read_only=True`` fails with "different configuration"). dbt
also keeps global flags, logging and adapter state between invocations. A child process
(``python -m dbt.cli.main``, the venv's own interpreter) releases everything when it exits; it
costs a few seconds of imports per build, which is small next to a build. Results are read from
``run_results.json``, dbt's own machine-readable record, not scraped from logs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mobility.settings import DBT_PROJECT_DIR, Workdir

log = logging.getLogger(__name__)

# statuses in run_results.json that mean a node did not do its job
FAILED_STATUSES = {"error", "fail", "runtime error", "skipped"}


class DbtBuildError(RuntimeError):
    """dbt failed; the message names each failed node and why."""

    def __init__(self, message: str, result: "DbtResult"):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    message: str | None
    execution_time: float
    failures: int | None = None


@dataclass
class DbtResult:
    """What one dbt invocation did."""

    args: list[str]
    returncode: int
    elapsed_s: float
    target_path: Path
    nodes: list[NodeResult] = field(default_factory=list)
    output_tail: str = ""

    @property
    def success(self) -> bool:
        return self.returncode == 0 and not self.failed_nodes

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in FAILED_STATUSES]

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        return {
            "success": self.success,
            "args": self.args,
            "elapsed_s": round(self.elapsed_s, 2),
            "nodes": len(self.nodes),
            "statuses": counts,
            "failed": [{"node": n.unique_id, "status": n.status, "message": n.message} for n in self.failed_nodes],
        }


def dbt_paths(workdir: Workdir) -> tuple[Path, Path]:
    """dbt's target and log folders for this workdir (DIR/dbt/target, DIR/dbt/logs)."""
    return workdir.dbt_target, workdir.root / "dbt" / "logs"


def dbt_env(workdir: Workdir) -> dict[str, str]:
    """The child's environment: ours, plus the workdir paths, minus network chatter."""
    env = dict(os.environ)
    env.update(workdir.env())
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    env.setdefault("DBT_VERSION_CHECK", "False")
    env["DBT_USE_COLORS"] = "False"
    return env


def contract_vars() -> dict[str, object]:
    """dbt vars derived from the contracts of the registry's feeds.

    ``feed_sla_hours``: feed -> delivery latency its contract promises (slaProperties latency), in
    hours; the feed-health mart compares arrivals with it. Where partners' contracts for one feed
    differ, the most lenient latency is used, so no partner is reported late by another's terms.
    """
    from ingest.contracts import ContractNotFound, load_contract
    from mobility.registry import load_registry

    sla: dict[str, float] = {}
    for _, feed in load_registry().feeds():
        try:
            contract = load_contract(feed.contract)
        except ContractNotFound:  # a feed not under contract yet lands nothing to judge
            continue
        hours = contract.sla_latency_hours()
        if hours is not None:
            sla[feed.feed] = max(hours, sla.get(feed.feed, 0.0))
    return {"feed_sla_hours": dict(sorted(sla.items()))}


def run_dbt(
    workdir: Workdir | str | Path,
    args: Sequence[str] = ("build",),
    vars: Mapping[str, object] | None = None,
    *,
    check: bool = True,
    project_dir: Path = DBT_PROJECT_DIR,
    timeout_s: float | None = 3600,
) -> DbtResult:
    """Run ``dbt <args>`` against the workdir's warehouse; raise DbtBuildError on failure unless check=False."""
    from mobility.spatial import install_spatial

    wd = workdir if isinstance(workdir, Workdir) else Workdir.resolve(workdir)
    install_spatial()  # dbt-duckdb's `extensions: [spatial]` then loads it without a download
    target_path, log_path = dbt_paths(wd)
    target_path.mkdir(parents=True, exist_ok=True)
    log_path.mkdir(parents=True, exist_ok=True)
    wd.warehouse.parent.mkdir(parents=True, exist_ok=True)
    # a stale run_results.json would report the previous run's nodes as this run's
    (target_path / "run_results.json").unlink(missing_ok=True)

    argv = [
        *args,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target-path", str(target_path),
        "--log-path", str(log_path),
    ]
    # the contracts' vars first: a caller's own vars win
    all_vars = {**contract_vars(), **dict(vars or {})}
    argv += ["--vars", json.dumps(all_vars)]
    cmd = [sys.executable, "-m", "dbt.cli.main", *argv]
    log.info("dbt %s (workdir %s)", " ".join(args), wd.root)
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=project_dir, env=dbt_env(wd), capture_output=True, text=True, timeout=timeout_s
    )
    output = (proc.stdout or "") + (proc.stderr or "")
    result = DbtResult(
        args=list(argv),
        returncode=proc.returncode,
        elapsed_s=time.monotonic() - started,
        target_path=target_path,
        nodes=_read_run_results(target_path / "run_results.json"),
        output_tail="\n".join(output.strip().splitlines()[-40:]),
    )
    log.info("dbt %s finished in %.1fs: %s", args[0] if args else "", result.elapsed_s, result.summary()["statuses"])
    if check and not result.success:
        raise DbtBuildError(_failure_message(result), result)
    return result


def _read_run_results(path: Path) -> list[NodeResult]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [
        NodeResult(
            unique_id=r["unique_id"],
            status=str(r["status"]),
            message=r.get("message"),
            execution_time=float(r.get("execution_time") or 0.0),
            failures=r.get("failures"),
        )
        for r in data.get("results", [])
    ]


def _failure_message(result: DbtResult) -> str:
    failed = [n for n in result.failed_nodes if n.status != "skipped"]
    if failed:
        lines = [f"dbt failed on {len(failed)} node(s):"]
        lines += [f"- {n.unique_id} [{n.status}]: {(n.message or '').strip()}" for n in failed]
        skipped = len(result.failed_nodes) - len(failed)
        if skipped:
            lines.append(f"({skipped} downstream node(s) skipped)")
        return "\n".join(lines)
    # no node results: dbt stopped before running anything (parse/compile/profile error)
    return f"dbt exited with code {result.returncode} before running nodes:\n{result.output_tail}"


# Registry kinds whose free-floating vehicles the supply models count, and the mode they count as.
MODE_OF_KIND = {"scooter_operator": "scooter", "bikeshare_operator": "bikeshare"}


def consortium_vars(registry=None) -> dict:
    """The dbt vars that come from the registry and the contracts: each partner's vehicle mode,
    the compliance rules (partners.yaml consortium section) and each contract's latency SLA."""
    from ingest.contracts import available, load_contract
    from mobility.registry import load_registry

    registry = registry or load_registry()
    rules = registry.consortium.compliance
    latency = {}
    for contract_id, versions in available().items():
        hours = load_contract(f"{contract_id}@{versions[-1]}").sla_latency_hours()
        if hours is not None:
            latency[contract_id] = hours
    return {
        "partner_modes": {p.id: MODE_OF_KIND[p.kind] for p in registry.partners if p.kind in MODE_OF_KIND},
        "equity_zone_required_share": rules.equity_zone_required_share,
        "compliance_local_hours": rules.local_hours,
        "fleet_caps": dict(rules.fleet_caps),
        "contract_latency_hours": latency,
    }
