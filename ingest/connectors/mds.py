"""MDS 2.0 Provider API client: hourly /trips and /events/historical, paged /vehicles.

Semantics (MDS 2.0): 200 with an empty list is an empty hour; 202 means the provider is still
processing the hour (ask again later); 404 means a future or non-operating hour; 406 means the
requested version is not supported. The provider is identified by its bearer token, which is
either static or obtained with the OAuth 2.0 client-credentials grant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from ingest.connectors.base import (
    ClientCredentials,
    Fetched,
    HttpConnector,
    NoData,
    NotReady,
    PartnerRejected,
    authenticated_client,
    get_with_retries,
    now_utc,
)

MDS_VERSION = "2.0"
MEDIA_TYPE = f"application/vnd.mds+json;version={MDS_VERSION}"


@dataclass(frozen=True)
class MdsSettings:
    base_url: str
    token: str  # secret (bearer token, or the OAuth client secret): never logged, never in argv
    timeout_s: float = 30.0
    attempts: int = 4
    oauth: ClientCredentials | None = None

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return (f"MdsSettings(base_url={self.base_url!r}, token=***, timeout_s={self.timeout_s}, "
                f"oauth={self.oauth!r})")


def hour_param(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


class MdsClient(HttpConnector):
    def __init__(self, settings: MdsSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self._client = authenticated_client(
            base_url=settings.base_url.rstrip("/") + "/",
            secret=settings.token,
            oauth=settings.oauth,
            headers={"Accept": MEDIA_TYPE},
            timeout=settings.timeout_s,
            transport=transport,
        )

    def _hourly(self, path: str, param: str, hour: datetime) -> Fetched:
        response = get_with_retries(
            self._client, path, params={param: hour_param(hour)}, attempts=self.settings.attempts
        )
        url = str(response.request.url)
        if response.status_code == 202:
            raise NotReady(f"{url}: provider still processing hour {hour_param(hour)} (202)")
        if response.status_code == 404:
            raise NoData(f"{url}: hour {hour_param(hour)} not available (404: future or non-operating)")
        if response.status_code != 200:
            raise PartnerRejected(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        return Fetched(
            content=response.content,
            url=url,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            fetched_at=now_utc(),
        )

    def trips(self, hour: datetime) -> Fetched:
        return self._hourly("trips", "end_time", hour)

    def events(self, hour: datetime) -> Fetched:
        return self._hourly("events/historical", "event_time", hour)

    def vehicle_status_pages(self) -> list[Fetched]:
        """Every page of /vehicles/status, following JSON:API `links.next`."""
        pages: list[Fetched] = []
        url: str | None = "vehicles/status"
        while url:
            response = get_with_retries(self._client, url, attempts=self.settings.attempts)
            if response.status_code != 200:
                raise PartnerRejected(f"{response.request.url}: HTTP {response.status_code}")
            pages.append(
                Fetched(response.content, str(response.request.url), 200,
                        response.headers.get("content-type", ""), now_utc())
            )
            url = (json.loads(response.content).get("links") or {}).get("next")
            if len(pages) > 10_000:
                raise PartnerRejected("more than 10,000 pages of /vehicles/status: refusing to loop")
        return pages
