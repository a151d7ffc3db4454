"""GBFS client (v2.x and v3.0): discovery through gbfs.json, then any listed file, honouring ttl.

Discovery differs by major version: v3.0 lists ``data.feeds``, v2.x ``data.<language>.feeds``
(the configured language, else the first one offered). Every file carries ``last_updated`` and
``ttl``: a file is not fetched again before ``last fetch + ttl`` within one client session.
GBFS feeds are usually public; a bearer token is sent only when one is configured.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ingest.connectors.base import Fetched, HttpConnector, NoData, PartnerRejected, get_with_retries, now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GbfsSettings:
    discovery_url: str  # the operator's gbfs.json
    version: str = "3.0"  # the major.minor the registry expects
    language: str = "en"  # v2.x discovery is per language
    token: str | None = None  # secret, when the feed is not public: never logged
    timeout_s: float = 30.0
    attempts: int = 4

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return (f"GbfsSettings(discovery_url={self.discovery_url!r}, version={self.version!r}, "
                f"token={'***' if self.token else None})")


@dataclass(frozen=True)
class GbfsFile(Fetched):
    """One GBFS file as fetched, with the header fields every GBFS file carries."""

    name: str = ""
    version: str = ""
    ttl: int = 0
    last_updated: Any = None  # epoch seconds (v2.x) or RFC 3339 text (v3.0), as sent


def feed_urls(discovery: dict, version: str, language: str = "en") -> dict[str, str]:
    """File name -> URL from a parsed gbfs.json of GBFS `version` (v3.0 or v2.x layouts)."""
    data = discovery.get("data")
    if not isinstance(data, dict):
        raise PartnerRejected("gbfs.json has no 'data' object")
    if version.startswith("3"):
        feeds = data.get("feeds")
    else:
        langs = [k for k, v in data.items() if isinstance(v, dict) and "feeds" in v]
        if not langs:
            raise PartnerRejected("gbfs.json (v2.x) lists no language with 'feeds'")
        feeds = data[language if language in langs else langs[0]]["feeds"]
    if not isinstance(feeds, list):
        raise PartnerRejected(f"gbfs.json (v{version}) has no feed list where the version puts it")
    return {f["name"]: f["url"] for f in feeds if isinstance(f, dict) and "name" in f and "url" in f}


class GbfsClient(HttpConnector):
    def __init__(self, settings: GbfsSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        headers = {"Accept": "application/json"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._client = httpx.Client(headers=headers, timeout=settings.timeout_s, transport=transport,
                                    follow_redirects=True)
        self._cache: dict[str, tuple[float, GbfsFile]] = {}  # url -> (monotonic expiry, file)

    def _get(self, url: str, name: str) -> GbfsFile:
        cached = self._cache.get(url)
        if cached and time.monotonic() < cached[0]:
            log.debug("GBFS %s still fresh (ttl): not fetched again", name)
            return cached[1]
        response = get_with_retries(self._client, url, attempts=self.settings.attempts)
        if response.status_code == 404:
            raise NoData(f"{response.request.url}: GBFS file {name} not found (404)")
        if response.status_code != 200:
            raise PartnerRejected(f"{response.request.url}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None  # landing archives the bytes and reports them unreadable
        head = body if isinstance(body, dict) else {}
        version = str(head.get("version", ""))
        if version and version.split(".")[0] != self.settings.version.split(".")[0]:
            raise PartnerRejected(
                f"{response.request.url}: GBFS version {version} served; the registry expects {self.settings.version}"
            )
        ttl = head.get("ttl") if isinstance(head.get("ttl"), int) else 0
        fetched = GbfsFile(
            content=response.content, url=str(response.request.url), status=200,
            content_type=response.headers.get("content-type", ""), fetched_at=now_utc(),
            name=name, version=version, ttl=max(0, ttl), last_updated=head.get("last_updated"),
        )
        if fetched.ttl:
            self._cache[url] = (time.monotonic() + fetched.ttl, fetched)
        return fetched

    def discovery(self) -> GbfsFile:
        """gbfs.json itself."""
        return self._get(self.settings.discovery_url, "gbfs")

    def feeds(self) -> dict[str, str]:
        """The files this system publishes: name -> URL."""
        return feed_urls(json.loads(self.discovery().content), self.settings.version, self.settings.language)

    def file(self, name: str) -> GbfsFile:
        """Any file listed in gbfs.json, e.g. ``vehicle_status`` (v3) or ``station_status`` (v2)."""
        urls = self.feeds()
        if name not in urls:
            raise PartnerRejected(f"{self.settings.discovery_url} does not list '{name}' (lists: {sorted(urls)})")
        return self._get(urls[name], name)

    def vehicle_status(self) -> GbfsFile:
        """GBFS 3.0 vehicle_status (free_bike_status in v2.x)."""
        return self.file("vehicle_status" if self.settings.version.startswith("3") else "free_bike_status")

    def station_status(self) -> GbfsFile:
        return self.file("station_status")

    def station_information(self) -> GbfsFile:
        return self.file("station_information")
