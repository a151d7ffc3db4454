"""GTFS schedule client: the agency's zip, downloaded only when it changed.

The request carries ``If-None-Match`` (and ``If-Modified-Since``) from the last landed download;
304 means unchanged and comes back as None. Agencies that ignore conditional requests are
caught by the caller comparing checksums.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from ingest.connectors.base import Fetched, HttpConnector, NoData, PartnerRejected, get_with_retries, now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GtfsSettings:
    url: str  # the feed zip
    token: str | None = None  # secret, when the feed is not public: never logged
    timeout_s: float = 120.0  # feeds of large agencies are tens of megabytes
    attempts: int = 4
    max_bytes: int = 512 << 20  # a download larger than this is not a feed we land

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"GtfsSettings(url={self.url!r}, token={'***' if self.token else None})"


@dataclass(frozen=True)
class GtfsDownload(Fetched):
    """The zip as fetched, with the validators to send next time."""

    etag: str | None = None
    last_modified: str | None = None


class GtfsClient(HttpConnector):
    def __init__(self, settings: GtfsSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._client = httpx.Client(headers=headers, timeout=settings.timeout_s, transport=transport,
                                    follow_redirects=True)

    def feed(self, *, etag: str | None = None, last_modified: str | None = None) -> GtfsDownload | None:
        """The zip, or None when the agency says it has not changed (304) since `etag`."""
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        # base.get_with_retries takes no per-request headers: set them for this call only
        # (one client serves one feed, from one task, so nothing else sees them)
        self._client.headers.update(conditional)
        try:
            response = get_with_retries(self._client, self.settings.url, attempts=self.settings.attempts)
        finally:
            for key in conditional:
                self._client.headers.pop(key, None)
        url = str(response.request.url)
        if response.status_code == 304:
            log.info("GTFS feed %s unchanged (304 for ETag %s)", url, etag)
            return None
        if response.status_code == 404:
            raise NoData(f"{url}: no GTFS feed (404)")
        if response.status_code != 200:
            raise PartnerRejected(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        if len(response.content) > self.settings.max_bytes:
            raise PartnerRejected(f"{url}: {len(response.content)} bytes, over the {self.settings.max_bytes} limit")
        return GtfsDownload(
            content=response.content, url=url, status=200,
            content_type=response.headers.get("content-type", ""), fetched_at=now_utc(),
            etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"),
        )
