"""The partner simulator's HTTP surface: MDS 2.0 Provider, GBFS 3.0/2.3, GTFS, faults, clock.

Endpoints (``{p}`` is a partner id of partners.yaml; a partner only answers for its protocols):

- ``GET /{p}/mds/trips?end_time=YYYY-MM-DDTHH`` and ``/{p}/mds/events/historical?event_time=...``:
  one UTC hour, no paging. 200 (possibly ``[]``), 202 if the hour ended less than
  ``processing_delay`` ago, 404 for a current/future hour or one before operations started,
  400 for a missing or malformed parameter (MDS error body).
- ``GET /{p}/mds/vehicles`` and ``/{p}/mds/vehicles/status``: snapshot at the clock's now (30 s
  resolution), JSON:API page-number paging: ``?page[number]=N&page[size]=S`` (N from 1,
  S default 1000, max 5000); ``links.first/last/prev/next`` are absolute URLs (null at the ends).
  The status records are under ``vehicles_status`` as in the official MDS 2.0 schema.
- MDS auth: ``Authorization: Bearer <token>``; the token must equal the environment variable named
  by the feed's ``credential`` (read per request; unset means every request is refused with 401).
  A feed whose registry ``auth`` is ``oauth2_client_credentials`` takes instead tokens issued by
  ``POST /{p}/oauth/token`` (client-credentials grant; client id from the registry, client
  secret = that variable), valid for ``app.state.oauth["token_lifetime_s"]`` (default 1 h).
  ``Accept: application/vnd.mds+json;version=2.0`` (or no version) is served, any other MDS version
  gets 406. Responses are ``application/vnd.mds+json;version=2.0``.
- ``GET /{p}/gbfs/<file>.json``: GBFS 3.0 (gbfs, system_information, vehicle_types,
  vehicle_status) or 2.3 (gbfs, system_information, station_information, station_status,
  free_bike_status) per the partner's feed version.
- ``GET /{p}/gtfs/feed.zip``: deterministic GTFS zip; ``ETag``/``Last-Modified``; 304 on
  ``If-None-Match``.
- Admin: ``GET /_sim/health``; ``POST /_sim/faults`` (see ``faults``), ``GET``/``DELETE
  /_sim/faults``; ``PUT /_sim/clock`` ``{"now": ISO-8601 | null}`` freezes or releases the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from mobility.settings import REGISTRY_PATH, Workdir
from mobility.simulator.consortium import PartnerSpec, demo_behaviour, load_demo_partners
from mobility.simulator.faults import PAYLOAD_MODES, FaultInjector, damage
from mobility.simulator.gtfs import build_gtfs
from mobility.simulator.world import World, to_ms

log = logging.getLogger(__name__)

MDS_VERSION = "2.0.0"
MDS_MEDIA_TYPE = "application/vnd.mds+json;version=2.0"
HOUR_PARAM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
SNAPSHOT_MS = 30_000
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 1000, 5000


class SimClock:
    """The simulator's notion of now: real UTC time unless frozen with ``set``."""

    def __init__(self, now: datetime | None = None) -> None:
        self._fixed = now

    def __call__(self) -> datetime:
        return self._fixed or datetime.now(timezone.utc)

    def set(self, now: datetime | None) -> None:
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        self._fixed = now

    def advance(self, delta: timedelta) -> None:
        self._fixed = self() + delta


class HttpError(Exception):
    def __init__(self, status: int, error: str, description: str, details: list[str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.details = details or [description]
        self.headers = headers or {}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def mds_hour_body(world: World, partner: str, hour: datetime, kind: str) -> Iterator[bytes]:
    """The body of ``/trips`` (``kind="trips"``) or ``/events/historical`` (``"events"``) for one
    hour, in UTF-8 chunks: byte for byte ``_dumps({"version": MDS_VERSION, kind: records})``, but
    written a few thousand records at a time, so a 10M-trips-a-day hour (hundreds of thousands of
    records, ~200 MB of JSON) never exists as dicts or as one string."""
    records = world.trip_records_json if kind == "trips" else world.event_records_json
    # the first piece carries the first records, so the hour is generated before a byte is sent
    head, sep = _dumps({"version": MDS_VERSION})[:-1] + f',"{kind}":['.encode(), b""
    for chunk in records(partner, hour):
        yield head + sep + chunk.encode("utf-8")
        head, sep = b"", b","
    yield head + b"]}"


def _rfc3339(t: datetime, tz: Any) -> str:
    return t.astimezone(tz).replace(microsecond=0).isoformat()


def create_app(
    world: World,
    partners: dict[str, PartnerSpec],
    *,
    clock: Callable[[], datetime] | None = None,
    processing_delay: timedelta = timedelta(minutes=5),
    timeout_s: float = 5.0,
    faults: FaultInjector | None = None,
) -> FastAPI:
    """The FastAPI app serving ``world`` for ``partners`` (see the module docstring)."""
    app = FastAPI(title="Mobility Commons partner simulator", docs_url=None, redoc_url=None)
    sim_clock = clock if clock is not None else SimClock()
    injector = faults or FaultInjector()
    app.state.world, app.state.partners, app.state.clock, app.state.faults = world, partners, sim_clock, injector
    tz = world.city.tz

    def now() -> datetime:
        t = sim_clock()
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)

    @lru_cache(maxsize=16)
    def status_snapshot(operator: str, snap_ms: int) -> list[dict[str, Any]]:
        return world.mds_vehicle_status(operator, datetime.fromtimestamp(snap_ms / 1000, timezone.utc))

    @lru_cache(maxsize=4)
    def gtfs_feed(year: int) -> tuple[bytes, str, str]:
        if not world.city.transit:
            raise HttpError(404, "not_found", "this city has no transit network")
        start = date(year, 1, 1)
        data = build_gtfs(world.city.transit, start, date(year + 1, 12, 31))
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        modified = format_datetime(datetime(year, 1, 1, tzinfo=timezone.utc), usegmt=True)
        return data, etag, modified

    # ---------------------------------------------------------------- plumbing
    def partner_feed(partner: str, protocol: str):
        spec = partners.get(partner)
        feed = spec.feed_by_protocol(protocol) if spec else None
        if feed is None:
            raise HttpError(404, "not_found", f"partner {partner!r} has no {protocol} feed")
        return spec, feed

    # OAuth access tokens issued by /{partner}/oauth/token: token -> (partner, monotonic expiry)
    issued: dict[str, tuple[str, float]] = {}
    app.state.oauth = {"token_lifetime_s": 3600.0, "issued": issued, "requests": 0}

    def check_auth(request: Request, partner: str, feed: Any) -> None:
        if not feed.credential:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        token = token.strip()
        if feed.auth.type == "oauth2_client_credentials":
            owner, expires = issued.get(token, (None, 0.0))
            ok = scheme.lower() == "bearer" and owner == partner and time.monotonic() < expires
        else:
            expected = os.environ.get(feed.credential)
            ok = bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token, expected)
        if not ok:
            raise HttpError(401, "unauthorized", "missing, expired or invalid bearer token",
                            headers={"WWW-Authenticate": 'Bearer realm="mds"'})

    def check_version(request: Request) -> None:
        accept = request.headers.get("accept", "")
        for part in accept.split(","):
            media, *params = [x.strip() for x in part.split(";")]
            if media.lower() != "application/vnd.mds+json":
                continue
            for p in params:
                key, _, value = p.partition("=")
                if key.strip().lower() == "version":
                    v = value.strip().strip('"')
                    if v != "2.0" and not v.startswith("2.0."):
                        raise HttpError(406, "unsupported_version",
                                        f"MDS version {v} is not supported; this provider serves 2.0")

    def parse_hour(request: Request, name: str) -> datetime:
        raw = request.query_params.get(name)
        if raw is None:
            raise HttpError(400, "missing_param", f"a required parameter is missing: {name}", [name])
        if not HOUR_PARAM.match(raw):
            raise HttpError(400, "bad_param", f"{name} must be YYYY-MM-DDTHH (UTC)", [name])
        try:
            return datetime.strptime(raw, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        except ValueError:
            raise HttpError(400, "bad_param", f"{name} is not a valid hour", [name]) from None

    async def status_fault(partner: str, rel: str, fault: Any) -> None:
        """Raise the error a status fault asks for, or sleep for a timeout fault."""
        if fault is None:
            return
        log.info("fault %s on %s %s", fault.mode, partner, rel)
        if fault.mode == "500":
            raise HttpError(500, "internal_error", "simulated server error")
        if fault.mode == "429":
            retry = str(fault.options.get("retry_after", 1))
            raise HttpError(429, "too_many_requests", "simulated rate limit", headers={"Retry-After": retry})
        if fault.mode == "202":
            raise HttpError(202, "not_ready", "simulated: still processing")
        if fault.mode == "timeout":
            await asyncio.sleep(float(fault.options.get("seconds", timeout_s)))

    async def respond(request: Request, partner: str, rel: str, build: Callable[[], Any], *,
                      media_type: str = MDS_MEDIA_TYPE, status: int = 200,
                      headers: dict[str, str] | None = None, fault: Any = ...) -> Response:
        """Apply any pending fault, then build, (maybe damage) and serialise the payload."""
        if fault is ...:
            fault = injector.take(partner, rel, request.query_params)
        await status_fault(partner, rel, fault)
        body = await run_in_threadpool(build)
        if isinstance(body, bytes):
            data = body
        else:
            if fault is not None and fault.mode in PAYLOAD_MODES - {"truncated"}:
                body = damage(body, fault)
            data = _dumps(body)
        if fault is not None and fault.mode == "truncated":
            data = data[: max(1, len(data) // 2)]
        return Response(content=data, status_code=status, media_type=media_type, headers=headers)

    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError) -> Response:
        body = {"error": exc.error, "error_description": exc.description, "error_details": exc.details}
        media = MDS_MEDIA_TYPE if "/mds/" in request.url.path else "application/json"
        return Response(_dumps(body), status_code=exc.status, media_type=media, headers=exc.headers)

    # ---------------------------------------------------------------- admin
    @app.get("/_sim/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "now": now().isoformat(), "seed": world.seed, "partners": sorted(partners)}

    @app.post("/_sim/faults")
    async def add_fault(request: Request) -> JSONResponse:
        spec = await request.json()
        try:
            opts = {k: v for k, v in spec.items() if k not in {"mode", "partner", "path", "times"}}
            f = injector.add(spec.get("mode"), spec.get("partner"), spec.get("path"), spec.get("times", 1), **opts)
        except (ValueError, AttributeError, TypeError) as exc:
            return JSONResponse({"error": "bad_param", "error_description": str(exc),
                                 "error_details": [str(exc)]}, status_code=400)
        return JSONResponse({"added": vars(f)}, status_code=201)

    @app.get("/_sim/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": injector.pending()}

    @app.delete("/_sim/faults")
    async def clear_faults() -> dict[str, Any]:
        injector.clear()
        return {"faults": []}

    @app.put("/_sim/clock")
    async def set_clock(request: Request) -> JSONResponse:
        if not isinstance(sim_clock, SimClock):
            return JSONResponse({"error": "clock is an injected callable"}, status_code=409)
        raw = (await request.json()).get("now")
        sim_clock.set(datetime.fromisoformat(raw) if raw else None)
        return JSONResponse({"now": now().isoformat()})

    # ---------------------------------------------------------------- MDS
    def hourly_gate(partner: str, hour: datetime) -> None:
        """MDS hour semantics against the simulator clock."""
        t = now()
        end = hour + timedelta(hours=1)
        if end > t:
            raise HttpError(404, "not_found", f"hour {hour:%Y-%m-%dT%H} is not in the past")
        if not world.operating(partner, int(hour.timestamp() // 3600)):
            raise HttpError(404, "not_found", f"no operations during hour {hour:%Y-%m-%dT%H}")
        if t - end < processing_delay:
            raise HttpError(202, "not_ready", f"hour {hour:%Y-%m-%dT%H} is still being processed")

    async def mds_hourly(request: Request, partner: str, rel: str, param: str, kind: str) -> Response:
        _, feed = partner_feed(partner, "mds")
        check_auth(request, partner, feed)
        check_version(request)
        hour = parse_hour(request, param)
        # faults come before hour semantics so a forced 202/500 applies to any hour
        fault = injector.take(partner, rel, request.query_params)
        if fault is None:
            hourly_gate(partner, hour)
        if fault is None or fault.mode not in PAYLOAD_MODES:
            await status_fault(partner, rel, fault)
            # streamed as JSON text, each chunk built in the thread pool; the first one (which
            # generates the hour's trips) before the status line, so a failure is still a 500
            body = mds_hour_body(world, partner, hour, kind)
            first = await run_in_threadpool(next, body)
            return StreamingResponse(itertools.chain([first], body), media_type=MDS_MEDIA_TYPE)
        # a damaged payload is built from the records as dicts (small hours: tests, drills)
        records = world.trips_ending_in_hour if kind == "trips" else world.events_in_hour
        return await respond(request, partner, rel, lambda: {"version": MDS_VERSION, kind: records(partner, hour)},
                             fault=fault)

    @app.post("/{partner}/oauth/token")
    async def oauth_token(request: Request, partner: str) -> JSONResponse:
        """RFC 6749 client-credentials grant, client authenticated by HTTP Basic or in the form."""
        spec = partners.get(partner)
        feed = spec.feed_by_protocol("mds") if spec else None
        if feed is None or feed.auth.type != "oauth2_client_credentials":
            raise HttpError(404, "not_found", f"partner {partner!r} has no OAuth token endpoint")
        form = await request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, basic = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(basic).decode().partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        app.state.oauth["requests"] += 1
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        expected = os.environ.get(feed.credential or "")
        if (client_id != feed.auth.client_id or not expected or not client_secret
                or not hmac.compare_digest(str(client_secret), expected)):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_urlsafe(24)
        lifetime = float(app.state.oauth["token_lifetime_s"])
        issued[token] = (partner, time.monotonic() + lifetime)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
                            headers={"Cache-Control": "no-store"})

    @app.get("/{partner}/mds/trips")
    async def mds_trips(request: Request, partner: str) -> Response:
        return await mds_hourly(request, partner, "mds/trips", "end_time", "trips")

    @app.get("/{partner}/mds/events/historical")
    async def mds_events(request: Request, partner: str) -> Response:
        return await mds_hourly(request, partner, "mds/events/historical", "event_time", "events")

    def paged(request: Request, key: str, records_for: Callable[[int], list[dict[str, Any]]]):
        q = request.query_params
        try:
            number = int(q.get("page[number]", 1))
            size = int(q.get("page[size]", DEFAULT_PAGE_SIZE))
        except ValueError:
            raise HttpError(400, "bad_param", "page[number] and page[size] must be integers",
                            ["page[number]", "page[size]"]) from None
        if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise HttpError(400, "bad_param", f"page[number] >= 1 and 1 <= page[size] <= {MAX_PAGE_SIZE}",
                            ["page[number]", "page[size]"])
        t_ms = to_ms(now())
        snap = t_ms // SNAPSHOT_MS * SNAPSHOT_MS

        def build() -> dict[str, Any]:
            recs = records_for(snap)
            last = max(1, -(-len(recs) // size))

            def link(n: int) -> str:
                return str(request.url.include_query_params(**{"page[number]": n, "page[size]": size}))

            return {
                "version": MDS_VERSION, "last_updated": snap, "ttl": snap + SNAPSHOT_MS - t_ms,
                key: recs[(number - 1) * size : number * size],
                "links": {"first": link(1), "last": link(last),
                          "prev": link(number - 1) if 1 < number <= last + 1 else None,
                          "next": link(number + 1) if number < last else None},
            }

        return build

    @app.get("/{partner}/mds/vehicles")
    async def mds_vehicles(request: Request, partner: str) -> Response:
        _, feed = partner_feed(partner, "mds")
        check_auth(request, partner, feed)
        check_version(request)
        build = paged(request, "vehicles", lambda snap: world.mds_vehicles(partner))
        return await respond(request, partner, "mds/vehicles", build)

    @app.get("/{partner}/mds/vehicles/status")
    async def mds_vehicles_status(request: Request, partner: str) -> Response:
        _, feed = partner_feed(partner, "mds")
        check_auth(request, partner, feed)
        check_version(request)
        build = paged(request, "vehicles_status", lambda snap: status_snapshot(partner, snap))
        return await respond(request, partner, "mds/vehicles/status", build)

    # ---------------------------------------------------------------- GBFS
    def gbfs_v3(request: Request, partner: str, name: str, t: datetime) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/") + f"/{partner}/gbfs"
        spec = partners[partner]
        head = {"last_updated": _rfc3339(t, tz), "ttl": 60, "version": "3.0"}
        if name == "gbfs":
            feeds = ["system_information", "vehicle_types", "vehicle_status"]
            return {**head, "data": {"feeds": [{"name": f, "url": f"{base}/{f}.json"} for f in feeds]}}
        if name == "system_information":
            return {**head, "ttl": 3600, "data": {
                "system_id": partner, "languages": ["en"], "name": [{"text": spec.name, "language": "en"}],
                "opening_hours": "24/7", "feed_contact_email": f"data@{partner}.example.com",
                "timezone": str(tz)}}
        if name == "vehicle_types":
            return {**head, "ttl": 3600, "data": {"vehicle_types": [{
                "vehicle_type_id": "scooter_electric", "form_factor": "scooter_standing",
                "propulsion_type": "electric", "max_range_meters": 40000,
                "name": [{"text": "E-scooter", "language": "en"}]}]}}
        if name == "vehicle_status":
            s = world.vehicle_states(partner, t)
            fleet = world.fleet(partner)
            vehicles = [
                {"vehicle_id": world.gbfs_vehicle_id(partner, fleet[i], t),
                 "lat": float(s["lat"][i]), "lon": float(s["lon"][i]),
                 "is_reserved": False, "is_disabled": False, "vehicle_type_id": "scooter_electric",
                 "current_range_meters": int(s["battery"][i]) * 400,
                 "last_reported": _rfc3339(datetime.fromtimestamp(int(s["event_ts"][i]) / 1000, timezone.utc), tz)}
                for i in range(len(fleet)) if s["state"][i] == "available"  # rented vehicles are absent
            ]
            vehicles.sort(key=lambda v: v["vehicle_id"])  # no fleet order to leak device identity
            return {**head, "data": {"vehicles": vehicles}}
        raise HttpError(404, "not_found", f"no GBFS 3.0 file {name}.json")

    def gbfs_v2(request: Request, partner: str, name: str, t: datetime) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/") + f"/{partner}/gbfs"
        spec = partners[partner]
        head = {"last_updated": int(t.timestamp()), "ttl": 60, "version": "2.3"}
        if name == "gbfs":
            feeds = ["system_information", "station_information", "station_status", "free_bike_status"]
            return {**head, "data": {"en": {"feeds": [{"name": f, "url": f"{base}/{f}.json"} for f in feeds]}}}
        if name == "system_information":
            return {**head, "ttl": 3600, "data": {"system_id": partner, "language": "en", "name": spec.name,
                                                  "timezone": str(tz)}}
        if name == "station_information":
            st = world.stations(partner)
            return {**head, "ttl": 3600, "data": {"stations": [
                {"station_id": str(st["station_id"][i]), "name": str(st["name"][i]),
                 "lat": float(st["lat"][i]), "lon": float(st["lon"][i]), "capacity": int(st["capacity"][i])}
                for i in range(len(st["station_id"]))]}}
        if name == "station_status":
            st, ss = world.stations(partner), world.station_status(partner, t)
            reported = int(ss["slot_ms"] // 1000)
            return {**head, "data": {"stations": [
                {"station_id": str(st["station_id"][i]), "num_bikes_available": int(ss["bikes"][i]),
                 "num_bikes_disabled": int(ss["disabled"][i]), "num_docks_available": int(ss["docks"][i]),
                 "is_installed": True, "is_renting": True, "is_returning": True, "last_reported": reported}
                for i in range(len(st["station_id"]))]}}
        if name == "free_bike_status":
            fb = world.free_bikes(partner, t)
            return {**head, "data": {"bikes": [
                {"bike_id": fb["bike_id"][i], "lat": float(fb["lat"][i]), "lon": float(fb["lon"][i]),
                 "is_reserved": False, "is_disabled": False} for i in range(len(fb["bike_id"]))]}}
        raise HttpError(404, "not_found", f"no GBFS 2.3 file {name}.json")

    @app.get("/{partner}/gbfs/{name}.json")
    async def gbfs(request: Request, partner: str, name: str) -> Response:
        _, feed = partner_feed(partner, "gbfs")
        check_auth(request, partner, feed)
        t = now()
        builder = gbfs_v3 if (feed.version or "3.0").startswith("3") else gbfs_v2
        body = builder(request, partner, name, t)  # raises 404 for unknown files before faults apply
        return await respond(request, partner, f"gbfs/{name}.json", lambda: body, media_type="application/json")

    # ---------------------------------------------------------------- GTFS
    @app.get("/{partner}/gtfs/feed.zip")
    async def gtfs(request: Request, partner: str) -> Response:
        _, feed = partner_feed(partner, "gtfs")
        check_auth(request, partner, feed)
        data, etag, modified = await run_in_threadpool(gtfs_feed, now().year)
        headers = {"ETag": etag, "Last-Modified": modified, "Cache-Control": "max-age=3600"}
        inm = request.headers.get("if-none-match")
        if inm and etag in [x.strip() for x in inm.split(",")] or inm == "*":
            return Response(status_code=304, headers=headers)
        return await respond(request, partner, "gtfs/feed.zip", lambda: data,
                             media_type="application/zip", headers=headers)

    return app


# -------------------------------------------------------------------- running it
def build_world(workdir: Workdir | str | Path, seed: int, partners: dict[str, PartnerSpec],
                scale: float = 1.0) -> World:
    wd = workdir if isinstance(workdir, Workdir) else Workdir.resolve(workdir)
    return World(wd, seed, demo_behaviour(partners, scale))


def serve(workdir: Workdir | str | Path, host: str = "127.0.0.1", port: int = 8765, seed: int = 7, *,
          partners_path: str | Path = REGISTRY_PATH, scale: float = 1.0,
          processing_delay: timedelta = timedelta(minutes=5)) -> None:
    """Run the simulator in the foreground (blocking) with uvicorn."""
    partners = load_demo_partners(partners_path)
    app = create_app(build_world(workdir, seed, partners, scale), partners, processing_delay=processing_delay)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class SimulatorURL(str):
    """The base URL of a running simulator; ``.sim`` gives the thread (faults, clock, world)."""

    sim: "SimulatorThread"


class SimulatorThread:
    """uvicorn serving the simulator on 127.0.0.1 in a daemon thread (port 0 = a free port)."""

    def __init__(self, app: FastAPI, port: int = 0) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # the standard asyncio loop, not uvloop: libuv's epoll can abort the whole process when its
        # loop runs in a secondary thread beside threads opening and closing fds (MagicStack/uvloop#438);
        # the test suite was killed so (SIGABRT) while this thread served an in-process ingest
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1,
                                loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"simulator:{self.port}", daemon=True)

    @property
    def faults(self) -> FaultInjector:
        return self.app.state.faults

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.app.state.clock

    @property
    def world(self) -> World:
        return self.app.state.world

    def start(self, timeout: float = 10.0) -> "SimulatorThread":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("simulator failed to start")
            time.sleep(0.01)
        log.info("partner simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> "SimulatorThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_simulator(
    workdir: Workdir | str | Path,
    seed: int = 7,
    port: int = 0,
    *,
    clock: Callable[[], datetime] | None = None,
    partners_path: str | Path = REGISTRY_PATH,
    scale: float = 1.0,
    processing_delay: timedelta = timedelta(minutes=5),
    timeout_s: float = 5.0,
    world: World | None = None,
) -> Iterator[SimulatorURL]:
    """Serve the simulator in a background thread; yields its base URL (``.sim`` = the thread)."""
    partners = load_demo_partners(partners_path)
    world = world or build_world(workdir, seed, partners, scale)
    app = create_app(world, partners, clock=clock, processing_delay=processing_delay, timeout_s=timeout_s)
    with SimulatorThread(app, port) as thread:
        url = SimulatorURL(thread.base_url)
        url.sim = thread
        yield url


def main(argv: list[str] | None = None) -> None:
    """``python -m mobility.simulator.server --workdir DIR [--port 8765] [--seed 7] [--scale 1]``."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    serve(Workdir.resolve(args.workdir), args.host, args.port, args.seed, scale=args.scale)


if __name__ == "__main__":
    main()
