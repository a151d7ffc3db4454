"""Who the demo partners are and how each one behaves in the simulated world.

The simulator serves the partners of the registry (``partners.yaml``), so a partner added there
is simulated too once it has a behaviour here.
``DEFAULT_BEHAVIOUR`` holds what a real partner's data would reveal: fleet sizes, demand, and the
planted equity gap (operators deploy proportionally fewer vehicles in equity zones).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mobility.registry import Partner, load_registry


PartnerSpec = Partner


def load_demo_partners(path: str | Path) -> dict[str, Partner]:
    """Partners from the registry (validated), keyed by id."""
    return {p.id: p for p in load_registry(path).partners}


@dataclass(frozen=True)
class OperatorBehaviour:
    """How one partner behaves. Counts are for ``scale=1``; ``scaled`` multiplies them."""

    kind: str  # scooter_operator | bikeshare_operator | ridehail
    provider_id: str | None = None
    fleet_size: int = 0
    trips_per_day: float = 0.0
    # < 1: proportionally fewer vehicles (stations for bike-share) in equity zones: the planted gap
    equity_deployment_factor: float = 1.0
    # exponent on (income / median income): operators favour richer neighborhoods a little
    income_elasticity: float = 0.3
    weekend_factor: float = 0.85
    operations_start: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc)
    n_stations: int = 0  # bike-share only
    extra: dict[str, Any] = field(default_factory=dict)

    def scaled(self, scale: float) -> "OperatorBehaviour":
        return replace(
            self,
            fleet_size=max(1, round(self.fleet_size * scale)) if self.fleet_size else 0,
            trips_per_day=self.trips_per_day * scale,
            n_stations=max(2, round(self.n_stations * scale)) if self.n_stations else 0,
        )


DEFAULT_BEHAVIOUR: dict[str, OperatorBehaviour] = {
    "scootco": OperatorBehaviour(
        kind="scooter_operator",
        provider_id="6ddcc0ad-1d66-4046-bba4-cf1d4e6d9a3e",
        fleet_size=1600,
        trips_per_day=5200,
        equity_deployment_factor=0.45,
        weekend_factor=0.9,
    ),
    "zoomride": OperatorBehaviour(
        kind="scooter_operator",
        provider_id="2411d395-04f2-47c9-ab66-d09e9e3c3251",
        fleet_size=1200,
        trips_per_day=3600,
        equity_deployment_factor=0.55,
        weekend_factor=1.1,
        operations_start=datetime(2024, 3, 1, tzinfo=timezone.utc),
    ),
    "citybikes": OperatorBehaviour(
        kind="bikeshare_operator",
        fleet_size=1100,
        trips_per_day=2600,
        equity_deployment_factor=0.5,
        n_stations=130,
    ),
    "rideco": OperatorBehaviour(kind="ridehail", trips_per_day=6000, income_elasticity=0.2),
    "hailnow": OperatorBehaviour(
        kind="ridehail", trips_per_day=3500, income_elasticity=0.1, weekend_factor=1.15
    ),
}


def demo_behaviour(
    partners: dict[str, PartnerSpec] | None = None, scale: float = 1.0
) -> dict[str, OperatorBehaviour]:
    """The default behaviour scaled, with provider ids taken from the registry when given."""
    out = {pid: b.scaled(scale) for pid, b in DEFAULT_BEHAVIOUR.items()}
    for pid, spec in (partners or {}).items():
        if pid in out and spec.mds_provider_id:
            out[pid] = replace(out[pid], provider_id=spec.mds_provider_id)
    return out
