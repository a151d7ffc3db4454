"""k-suppression of published counts: one definition, used by publication and the publish gate.

Primary suppression: a count between 1 and k-1 could single out a few trips, so it is published
as NULL, together with every value derived from it (a rate reveals its count). Zero stays 0: "no
trips" discloses nothing about anyone.

Complementary suppression: a published total over cells of another published table would give
back a suppressed cell by subtraction. So a total is also suppressed when its cells hold exactly
one suppressed cell, or when its suppressed cells add up to less than k.

Fail closed: a mart without an entry in ``SUPPRESSION`` cannot be published.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_K = 10


@dataclass(frozen=True)
class TotalOf:
    """The count totals ``member_count`` over rows of ``member_table`` with equal ``keys``
    (and, if given, ``flag_column`` equal to ``flag_value``)."""

    member_table: str
    member_count: str
    keys: tuple[str, ...]
    flag_column: str | None = None
    flag_value: bool = True

    def sql_filter(self) -> str:
        return "true" if self.flag_column is None else f'"{self.flag_column}" = {str(self.flag_value).lower()}'


# published table -> {count column: columns derived from it, nulled with it}
SUPPRESSION: dict[str, dict[str, tuple[str, ...]]] = {
    "mart_trips_per_neighborhood_day": {
        "trips_started": ("trips_per_1000_residents",),
    },
    "mart_equity_trips_daily": {
        "equity_zone_trips_started": ("equity_zone_trips_per_1000_residents", "equity_ratio"),
        "other_trips_started": ("other_trips_per_1000_residents", "equity_ratio"),
    },
}

# published table -> {count column: the published cells it totals}
COMPLEMENTARY: dict[str, dict[str, TotalOf]] = {
    "mart_equity_trips_daily": {
        "equity_zone_trips_started": TotalOf(
            "mart_trips_per_neighborhood_day", "trips_started", ("trip_date", "mode"), "equity_zone", True
        ),
        "other_trips_started": TotalOf(
            "mart_trips_per_neighborhood_day", "trips_started", ("trip_date", "mode"), "equity_zone", False
        ),
    },
}


class UnknownPublishedTable(KeyError):
    """A mart has no suppression rule: refusing to publish it unreviewed."""


def rules_for(table: str) -> dict[str, tuple[str, ...]]:
    if table not in SUPPRESSION:
        raise UnknownPublishedTable(
            f"{table} has no entry in mobility.warehouse.suppression.SUPPRESSION; "
            "declare its count columns (or {} if it has none) before publishing it"
        )
    return SUPPRESSION[table]


def _small(expr: str, k: int) -> str:
    return f"({expr} between 1 and {int(k) - 1})"


def suppressed_select(table: str, columns: list[str], k: int, schema: str = "main") -> str:
    """SQL selecting ``columns`` of ``schema.table`` with small counts, their derivatives and revealing totals nulled."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rules = rules_for(table)
    missing = [c for c in rules if c not in columns]
    if missing:
        raise ValueError(f"{table} lacks count column(s) {missing} named in its suppression rule")

    ctes: list[str] = []
    joins: list[str] = []
    hidden: dict[str, str] = {}  # count column -> SQL condition under which it is suppressed
    for i, count in enumerate(rules):
        cond = _small(f't."{count}"', k)
        total = COMPLEMENTARY.get(table, {}).get(count)
        if total is not None:
            keys = ", ".join(f'"{key}"' for key in total.keys)
            member = f'"{total.member_count}"'
            small_cell = f"({total.sql_filter()}) and {_small(member, k)}"
            ctes.append(
                f"c{i} as (select {keys}, count(*) filter (where {small_cell}) as n_hidden, "
                f'sum("{total.member_count}") filter (where {small_cell}) as hidden_sum '
                f'from {schema}."{total.member_table}" group by {keys})'
            )
            joins.append(f"left join c{i} using ({keys})")
            cond = f"({cond} or c{i}.n_hidden = 1 or {_small(f'c{i}.hidden_sum', k)})"
        hidden[count] = cond

    derived: dict[str, list[str]] = {}
    for count, outs in rules.items():
        for out in outs:
            derived.setdefault(out, []).append(count)

    exprs = []
    for col in columns:
        conds = [hidden[col]] if col in hidden else [hidden[c] for c in derived.get(col, [])]
        if conds:
            exprs.append(f'case when {" or ".join(conds)} then null else t."{col}" end as "{col}"')
        else:
            exprs.append(f't."{col}"')
    with_clause = f"with {', '.join(ctes)} " if ctes else ""
    return f'{with_clause}select {", ".join(exprs)} from {schema}."{table}" as t {" ".join(joins)}'
