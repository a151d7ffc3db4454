"""Misbehaviour on request: the next N matching requests fail or return damaged payloads.

A fault matches on partner id (``None``/``"*"`` = any) and path: ``"trips"`` matches
``/scootco/mds/trips``, ``"status"`` matches ``/vehicles/status``, ``"vehicle_status"`` matches
``/gbfs/vehicle_status.json``, ``"feed.zip"`` the GTFS feed (``None``/``"*"`` = any path).

Modes: status faults ``500``, ``429`` (with ``Retry-After``), ``202``, ``timeout`` (sleeps, then
answers normally); payload faults ``truncated`` (body cut in half), ``extra_field`` (all records),
``missing_field``, ``wrong_type``, ``duplicate`` and ``foreign_provider`` (first record, or every
record with ``"rows": "all"``). Options: ``field`` (which field to damage), ``seconds`` (timeout),
``retry_after`` (429), ``query`` (match only requests with these query parameters, e.g.
``{"end_time": "2026-11-03T05"}``: one window, not whatever else asks the partner meanwhile).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUS_MODES = {"500", "429", "202", "timeout"}
PAYLOAD_MODES = {"truncated", "extra_field", "missing_field", "wrong_type", "duplicate", "foreign_provider"}
MODES = STATUS_MODES | PAYLOAD_MODES

# the field each payload fault damages unless the request names one
DEFAULT_MISSING = {"trips": "duration", "events": "timestamp", "vehicles": "vehicle_type",
                   "vehicles_status": "last_event", "gbfs": "is_disabled"}
DEFAULT_WRONG = {"trips": "distance", "events": "timestamp", "vehicles": "propulsion_types",
                 "vehicles_status": "device_id", "gbfs": "lat"}
FOREIGN_PROVIDER_ID = "00000000-0000-4000-8000-0000000000ff"


@dataclass
class Fault:
    mode: str
    partner: str | None = None
    path: str | None = None
    times: int | None = 1  # None: until cleared
    options: dict[str, Any] = field(default_factory=dict)

    def matches(self, partner: str, rel_path: str, query: Mapping[str, str] | None = None) -> bool:
        if self.partner not in (None, "*", partner):
            return False
        wanted = self.options.get("query") or {}
        if any((query or {}).get(k) != str(v) for k, v in wanted.items()):
            return False
        if self.path in (None, "*"):
            return True
        p = self.path.strip("/")
        rel = rel_path.strip("/")
        stem = rel.removesuffix(".json")
        return rel == p or stem == p or rel.endswith("/" + p) or stem.endswith("/" + p)


class FaultInjector:
    """Thread-safe queue of pending faults, shared by the HTTP admin endpoint and Python callers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, mode: str, partner: str | None = None, path: str | None = None,
            times: int | None = 1, **options: Any) -> Fault:
        mode = str(mode)
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {sorted(MODES)}")
        if times is not None and int(times) < 1:
            raise ValueError("times must be >= 1 (or null for 'until cleared')")
        fault = Fault(mode, partner, path, None if times is None else int(times), dict(options))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(f).copy() for f in self._faults]

    def take(self, partner: str, rel_path: str, query: Mapping[str, str] | None = None) -> Fault | None:
        """The first pending fault matching this request, consuming one of its uses."""
        with self._lock:
            for f in self._faults:
                if f.matches(partner, rel_path, query):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None


def records_of(body: Any) -> tuple[str, list[dict[str, Any]]] | None:
    """The record list of an MDS or GBFS payload and its kind, if any."""
    if not isinstance(body, dict):
        return None
    for kind in ("trips", "events", "vehicles_status", "vehicles"):
        if isinstance(body.get(kind), list):
            return kind, body[kind]
    data = body.get("data")
    if isinstance(data, dict):
        for key in ("vehicles", "bikes", "stations", "vehicle_types", "feeds"):
            if isinstance(data.get(key), list):
                return "gbfs", data[key]
    return None


def damage(body: Any, fault: Fault) -> Any:
    """Apply a payload fault to a decoded JSON body (returns a damaged copy)."""
    body = copy.deepcopy(body)
    found = records_of(body)
    if found is None or not found[1]:
        return body
    kind, recs = found
    targets = recs if fault.options.get("rows") == "all" else recs[:1]
    if fault.mode == "extra_field":
        for r in recs:
            r[fault.options.get("field", "x_sim_unexpected")] = "surprise"
    elif fault.mode == "missing_field":
        name = fault.options.get("field", DEFAULT_MISSING[kind])
        for r in targets:
            r.pop(name, None)
    elif fault.mode == "wrong_type":
        name = fault.options.get("field", DEFAULT_WRONG[kind])
        for r in targets:
            if name in r:
                r[name] = f"{r[name]}!" if not isinstance(r[name], str) else 12345
    elif fault.mode == "duplicate":
        recs.extend(copy.deepcopy(t) for t in targets)
    elif fault.mode == "foreign_provider":
        for r in targets:
            r["provider_id"] = fault.options.get("provider_id", FOREIGN_PROVIDER_ID)
    return body
