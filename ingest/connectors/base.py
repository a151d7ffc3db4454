"""What every connector shares: the fetched-bytes record, typed errors, auth and HTTP retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
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

    content: bytes | Path  # a dropped file stays on disk, its path here: landing reads it in blocks
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


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth 2.0 client-credentials grant: where to get a token and as which client.

    The client secret is not part of it: it travels separately, from the environment only.
    """

    token_url: str
    client_id: str
    scope: str | None = None


def authenticated_client(
    *,
    base_url: str,
    secret: str,
    oauth: ClientCredentials | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An HTTP client that authenticates every request: a static bearer token, or an OAuth token
    that authlib obtains with the client-credentials grant and fetches again once it expires."""
    common = {"base_url": base_url, "headers": dict(headers or {}), "timeout": timeout, "transport": transport}
    if oauth is None:
        common["headers"]["Authorization"] = f"Bearer {secret}"
        return httpx.Client(**common)
    return OAuth2Client(
        client_id=oauth.client_id,
        client_secret=secret,
        token_endpoint=oauth.token_url,
        grant_type="client_credentials",
        scope=oauth.scope,
        **common,
    )


def _fetch_token(client: OAuth2Client) -> None:
    url = client.metadata.get("token_endpoint")
    try:
        client.fetch_token()
    except OAuthError as exc:  # the authorisation server answered with an OAuth error
        raise PartnerRejected(f"{url}: token request refused: {exc.error}") from exc
    except httpx.TransportError as exc:
        raise Transient(f"{url}: token request failed: {type(exc).__name__}") from exc
    except ValueError as exc:  # a non-JSON or malformed token response
        raise PartnerRejected(f"{url}: token response unreadable: {exc}") from exc


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

    oauth = isinstance(client, OAuth2Client)
    if oauth and not client.token:
        _fetch_token(client)
    try:
        response = _get()
        if oauth and response.status_code == 401:
            # a token the partner revoked before its expiry: ask for a new one, once
            _fetch_token(client)
            response = _get()
        return response
    except (httpx.TransportError, httpx.HTTPStatusError) as exc:
        raise Transient(f"{url}: gave up after {attempts} attempts: {_brief(exc)}") from exc
    except OAuthError as exc:  # renewing an expired token inside the request failed
        raise PartnerRejected(f"{url}: token renewal refused: {exc.error}") from exc


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
