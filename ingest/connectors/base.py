"""What every connector shares: the fetched-bytes record, typed errors, and HTTP retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    """Exact bytes a partner sent, and for which request."""

    content: bytes
    url: str
    status: int
    content_type: str
    fetched_at: datetime


class FeedError(Exception):
    """A fetch that cannot succeed as asked (after retries where retrying made sense)."""


class NotReady(FeedError):
    """The partner is still processing this window (MDS 202): ask again later."""


class NoData(FeedError):
    """The window does not exist for this partner (MDS 404: a future or non-operating hour)."""


class PartnerRejected(FeedError):
    """The partner refused the request (auth, version, bad parameter)."""


class Transient(FeedError):
    """Server error, timeout or rate limit that persisted through every retry."""


class HttpConnector:
    """What every HTTP connector shares: one `httpx.Client` (set by the subclass), closed on exit."""

    _client: httpx.Client

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # timeouts, refused or dropped connections
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


def _wait(state: RetryCallState) -> float:
    """Honour Retry-After on 429 (capped), else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 429:
        try:
            return min(float(exc.response.headers.get("Retry-After", "1")), 30.0)
        except ValueError:
            return 1.0
    return wait_exponential_jitter(multiplier=0.5, max=8.0)(state)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("attempt %d failed (%s); retrying", state.attempt_number, _brief(exc))


def _brief(exc: BaseException | None) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url}"
    return f"{type(exc).__name__}: {exc}"


def get_with_retries(
    client: httpx.Client, url: str, *, params: dict | None = None, attempts: int = 4
) -> httpx.Response:
    """GET with retries on transient faults; other statuses come back for the caller to judge."""

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(attempts),
        wait=_wait,
        before_sleep=_log_retry,
        reraise=True,
    )
    def _get() -> httpx.Response:
        response = client.get(url, params=params)
        if response.status_code == 429 or response.status_code >= 500:
            response.raise_for_status()
        return response

    try:
        return _get()
    except (httpx.TransportError, httpx.HTTPStatusError) as exc:
        raise Transient(f"{url}: gave up after {attempts} attempts: {_brief(exc)}") from exc


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
