"""k-suppression of published counts: one definition, used by publication and the publish gate.

Primary suppression: a count between 1 and k-1 could single out a few trips, so it is published
as NULL, together with every value derived from it (a rate reveals its count). Zero stays 0: "no
trips" discloses nothing about anyone.

Complementary (secondary) cell suppression: a published total over cells of another published
table (a ``TotalOf`` in ``COMPLEMENTARY``) would give back a suppressed cell by subtraction. So
within each group of cells under one total, if exactly one cell is hidden, or the hidden cells add
up to less than k, more cells of that group are hidden as well: the smallest positive published
cells, in order of (count, ``cell_keys``), until at least two cells are hidden and they add up to
k or more. Zero cells are never used (a published 0 is known, hiding it protects nothing). The
total itself stays published: an analyst subtracting the visible cells from it gets a remainder
that is 0 with no hidden cell, or at least k spread over at least two hidden cells. Only when a
group has no such cell left (all its positive cells are already hidden) is the total suppressed
instead, as is every value derived from it. Complements are nulled with their derived values,
like primary suppressions.

The selection is SQL (DuckDB windows): per group, the number and sum of the primary-suppressed
cells, and over the group's positive published cells, in (count, cell_keys) order, a running
count and a running sum of the candidates before each one; a candidate is hidden while the group,
without it, is still short of two hidden cells or of k. The same per-cell view feeds both the
member table (which cells to hide) and the total table (whether the total must fall back).
Relations over the same member column must split its cells into disjoint groups (same keys and
cell keys, one flag column with distinct values): one pass is then exact, and overlapping groups
are refused rather than suppressed half-way.

Chained totals: a published count may total finer cells and be a cell of a coarser total itself
(trips per neighborhood-day total the hours and the origin-destination flows of that day, and
are cells of the equity totals). When such a count is hidden (as a complement, say), its finer
cells would add back up to it, so every positive cell under a hidden total is hidden too. A
count may total several tables' cells (one ``TotalOf`` each, its keys named as in the member
table, ``total_keys`` as in the total's table where they differ).

Fail closed: a mart without an entry in ``SUPPRESSION`` cannot be published.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_K = 10


@dataclass(frozen=True)
class TotalOf:
    """The count totals ``member_count`` over rows of ``member_table`` with equal ``keys``
    (and, if given, ``flag_column`` equal to ``flag_value``). ``cell_keys`` identify a cell
    within its group; they break ties, deterministically, when choosing complements."""

    member_table: str
    member_count: str
    keys: tuple[str, ...]
    cell_keys: tuple[str, ...]
    flag_column: str | None = None
    flag_value: bool = True
    # the keys' names in the total's own table, where they differ from the member table's
    total_keys: tuple[str, ...] | None = None

    @property
    def keys_in_total(self) -> tuple[str, ...]:
        return self.total_keys or self.keys

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
    # supply: counts of vehicles, docks and residents covered (from the census population), not
    # of people travelling; nothing to suppress
    "mart_vehicle_availability": {},
    "mart_vehicle_coverage": {},
    # compliance: vehicles and batches of each operator (published by design, as Chicago does)
    "mart_partner_compliance": {},
    # bike-share trips are people travelling
    "mart_bikeshare_docks": {"trips_started": ("trips_per_dock",)},
    "mart_bikeshare_docks_by_quintile": {"trips_started": ("trips_per_dock",)},
    "mart_bikeshare_pass_mix": {"trips_started": ()},
    # scheduled service and residents (public figures): no person counts
    "mart_transit_service": {},
    "mart_equity_transit_daily": {},
    # the share is derived from the trip counts: a small count on either side of it hides it
    "mart_first_last_mile": {
        "micromobility_trips": ("first_last_mile_share",),
        "first_last_mile_trips": ("first_last_mile_share",),
        "other_micromobility_trips": ("first_last_mile_share",),
        "trips_starting_near_frequent_stop": (),
        "trips_ending_near_frequent_stop": (),
    },
    "mart_trips_per_neighborhood_mode_hour": {
        "trips_started": ("trips_started_per_1000_residents",),
        "trips_ended": ("trips_ended_per_1000_residents",),
    },
    "mart_od_flows": {
        "trips": (),
    },
    "mart_feed_health": {},  # batches and rows of partner feeds: no count of people or trips
    # supply and service by group of neighborhoods: vehicles, docks and residents, no trips
    "mart_equity_scorecard": {},
}

# published table -> count columns that decide suppression but are never published.
# A neighborhood's micromobility trips in a day are the sum of its mode cells in the trip marts,
# a relation across modes that the complements there (chosen across neighborhoods) do not cover:
# published, that sum would give back a mode cell hidden there. So the first/last-mile mart
# publishes its share alone, nulled whenever a count on either side of it is small.
WITHHELD: dict[str, tuple[str, ...]] = {
    "mart_first_last_mile": (
        "micromobility_trips", "first_last_mile_trips", "other_micromobility_trips",
        "trips_starting_near_frequent_stop", "trips_ending_near_frequent_stop",
    ),
}

# published table -> {count column: the published cells it totals (one TotalOf, or a tuple)}
COMPLEMENTARY: dict[str, dict[str, TotalOf | tuple[TotalOf, ...]]] = {
    # a neighborhood's trips started in a day total its hours and its flows to each destination
    # (a null destination is a cell too: trips ending outside every neighborhood)
    "mart_trips_per_neighborhood_day": {
        "trips_started": (
            TotalOf(
                member_table="mart_trips_per_neighborhood_mode_hour", member_count="trips_started",
                keys=("neighborhood_id", "trip_date", "mode"), cell_keys=("local_hour",),
            ),
            TotalOf(
                member_table="mart_od_flows", member_count="trips",
                keys=("origin_neighborhood_id", "trip_date", "mode"), cell_keys=("destination_neighborhood_id",),
                total_keys=("neighborhood_id", "trip_date", "mode"),
            ),
        ),
    },
    "mart_equity_trips_daily": {
        "equity_zone_trips_started": TotalOf(
            member_table="mart_trips_per_neighborhood_day", member_count="trips_started",
            keys=("trip_date", "mode"), cell_keys=("neighborhood_id",),
            flag_column="equity_zone", flag_value=True,
        ),
        "other_trips_started": TotalOf(
            member_table="mart_trips_per_neighborhood_day", member_count="trips_started",
            keys=("trip_date", "mode"), cell_keys=("neighborhood_id",),
            flag_column="equity_zone", flag_value=False,
        ),
    },
    # a quintile's trips are the total of its neighborhoods' cells, and of its pass types' cells
    "mart_bikeshare_docks_by_quintile": {
        "trips_started": (
            TotalOf(
                member_table="mart_bikeshare_docks", member_count="trips_started",
                keys=("income_quintile", "local_date"), cell_keys=("neighborhood_id",),
            ),
            TotalOf(
                member_table="mart_bikeshare_pass_mix", member_count="trips_started",
                keys=("income_quintile", "local_date"), cell_keys=("pass_type",),
            ),
        ),
    },
}


def totals_of(table: str, count: str) -> tuple[TotalOf, ...]:
    """The relations in which ``table.count`` is the total."""
    spec = COMPLEMENTARY.get(table, {}).get(count)
    return () if spec is None else (spec,) if isinstance(spec, TotalOf) else tuple(spec)


def all_totals() -> list[tuple[str, str, TotalOf]]:
    """Every declared relation as (total table, total count, relation)."""
    return [(table, count, spec) for table, totals in COMPLEMENTARY.items()
            for count in totals for spec in totals_of(table, count)]


class UnknownPublishedTable(KeyError):
    """A mart has no suppression rule: refusing to publish it unreviewed."""


def rules_for(table: str) -> dict[str, tuple[str, ...]]:
    if table not in SUPPRESSION:
        raise UnknownPublishedTable(
            f"{table} has no entry in mobility.warehouse.suppression.SUPPRESSION; "
            "declare its count columns (or {} if it has none) before publishing it"
        )
    return SUPPRESSION[table]


def relations_over(member_table: str, member_count: str) -> list[TotalOf]:
    """The declared totals over ``member_table.member_count``, checked to split its cells into disjoint groups."""
    found = [spec for _, _, spec in _totals_over(member_table, member_count)]
    if len(found) > 1:
        first = found[0]
        flags = [spec.flag_value for spec in found]
        disjoint = (
            first.flag_column is not None
            and all(
                (s.keys, s.cell_keys, s.flag_column) == (first.keys, first.cell_keys, first.flag_column) for s in found
            )
            and len(set(flags)) == len(flags)
        )
        if not disjoint:
            raise ValueError(
                f"totals over {member_table}.{member_count} overlap; complementary suppression is only "
                "defined for totals that split the cells into disjoint groups"
            )
    return found


def _totals_over(member_table: str, member_count: str) -> list[tuple[str, str, TotalOf]]:
    return [(t, c, spec) for t, c, spec in all_totals()
            if spec.member_table == member_table and spec.member_count == member_count]


def _needed_columns(table: str) -> list[str]:
    """The columns ``suppressed_select`` of ``table`` reads: counts and the keys of its relations."""
    names: list[str] = []
    for count in rules_for(table):
        names.append(count)
        for spec in relations_over(table, count):
            names += [*spec.keys, *spec.cell_keys]
        for spec in totals_of(table, count):
            names += list(spec.keys_in_total)
    return list(dict.fromkeys(names))


def _small(expr: str, k: int) -> str:
    return f"({expr} between 1 and {int(k) - 1})"


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _match(names: tuple[str, ...], left: str, right: str) -> str:
    return " and ".join(f'{left}."{n}" is not distinct from {right}."{n}"' for n in names)


def _cells_sql(spec: TotalOf, k: int, schema: str) -> str:
    """One row per cell under ``spec``: its group keys, cell keys, ``cell`` count and whether it is hidden.

    hidden = primary (1..k-1) or complement. Candidates for complements are the group's positive,
    not primarily suppressed cells (counts >= k; never 0), ranked by (count, cell_keys); a candidate is taken while the
    group, with the primaries and the candidates ranked before it, has fewer than two hidden cells
    or hides less than k.
    """
    keys, cell_keys = _cols(spec.keys), _cols(spec.cell_keys)
    count = f'"{spec.member_count}"'
    k = int(k)
    return f"""
        select {keys}, {cell_keys}, cell,
            is_primary or (
                is_candidate and n_primary > 0
                and (n_primary + candidate_rank - 1 < 2 or primary_sum + candidates_before < {k})
            ) as hidden
        from (
            select *,
                count(*) filter (where is_primary) over (partition by {keys}) as n_primary,
                coalesce(sum(cell) filter (where is_primary) over (partition by {keys}), 0) as primary_sum,
                row_number() over candidates as candidate_rank,
                coalesce(sum(cell) over (candidates rows between unbounded preceding and 1 preceding), 0)
                    as candidates_before
            from (
                select {keys}, {cell_keys}, {count} as cell,
                    coalesce({_small(count, k)}, false) as is_primary,
                    coalesce({count} >= {k}, false) as is_candidate
                from {schema}."{spec.member_table}"
                where {spec.sql_filter()}
            )
            window candidates as (partition by {keys}, is_candidate order by cell, {cell_keys})
        )"""


def suppressed_select(table: str, columns: list[str], k: int, schema: str = "main", _depth: int = 0) -> str:
    """SQL selecting ``columns`` of ``schema.table`` with small counts, their complements, their
    derivatives, (when no complement is left) revealing totals, and the cells of hidden totals nulled."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if _depth > 8:
        raise ValueError(f"totals over {table} form a cycle; suppression needs them to nest")
    rules = rules_for(table)
    missing = [c for c in rules if c not in columns]
    if missing:
        raise ValueError(f"{table} lacks count column(s) {missing} named in its suppression rule")

    ctes: list[str] = []
    joins: list[str] = []
    hidden: dict[str, str] = {}  # count column -> SQL condition under which it is suppressed
    for i, count in enumerate(rules):
        conds = [_small(f't."{count}"', k)]
        # as a cell: hidden as a complement under any total over it
        for j, spec in enumerate(relations_over(table, count)):
            lacking = [c for c in (*spec.keys, *spec.cell_keys) if c not in columns]
            if lacking:
                raise ValueError(f"{table} lacks key column(s) {lacking} of a total over {count}")
            name = f"m{i}_{j}"
            ident = (*spec.keys, *spec.cell_keys)
            ctes.append(
                f"{name} as (select {_cols(ident)}, bool_or(hidden) as hidden "
                f"from ({_cells_sql(spec, k, schema)}) group by all)"
            )
            joins.append(f"left join {name} on {_match(ident, 't', name)}")
            conds.append(f"coalesce({name}.hidden, false)")
        # as a cell of a total that is hidden itself: the cells would add back up to it
        for j, (total_table, total_count, spec) in enumerate(_totals_over(table, count)):
            name = f"h{i}_{j}"
            inner = suppressed_select(total_table, _needed_columns(total_table), k, schema, _depth + 1)
            renamed = ", ".join(f'"{tk}" as "{mk}"' for tk, mk in zip(spec.keys_in_total, spec.keys))
            ctes.append(
                f'{name} as (select {renamed}, bool_or("{total_count}" is null) as total_hidden '
                f"from ({inner}) group by all)"
            )
            joins.append(f"left join {name} on {_match(spec.keys, 't', name)}")
            in_group = "true" if spec.flag_column is None else f't."{spec.flag_column}" = {str(spec.flag_value).lower()}'
            conds.append(f'(coalesce({name}.total_hidden, false) and t."{count}" > 0 and {in_group})')
        # as a total: hidden when its group could not be protected by complements
        for j, total in enumerate(totals_of(table, count)):
            relations_over(total.member_table, total.member_count)  # refuse overlapping groups
            name = f"c{i}_{j}"
            renamed = ", ".join(f'"{mk}" as "{tk}"' for mk, tk in zip(total.keys, total.keys_in_total))
            ctes.append(
                f"{name} as (select {renamed}, count(*) filter (where hidden) as n_hidden, "
                f"sum(cell) filter (where hidden) as hidden_sum "
                f"from ({_cells_sql(total, k, schema)}) group by all)"
            )
            joins.append(f"left join {name} on {_match(total.keys_in_total, 't', name)}")
            conds += [f"{name}.n_hidden = 1", _small(f"{name}.hidden_sum", k)]
        hidden[count] = f"({' or '.join(conds)})"

    derived: dict[str, list[str]] = {}
    for count, outs in rules.items():
        for out in outs:
            derived.setdefault(out, []).append(count)

    exprs = []
    for col in (c for c in columns if c not in WITHHELD.get(table, ())):
        conds = [hidden[col]] if col in hidden else [hidden[c] for c in derived.get(col, [])]
        if conds:
            exprs.append(f'case when {" or ".join(conds)} then null else t."{col}" end as "{col}"')
        else:
            exprs.append(f't."{col}"')
    with_clause = f"with {', '.join(ctes)} " if ctes else ""
    return f'{with_clause}select {", ".join(exprs)} from {schema}."{table}" as t {" ".join(joins)}'
