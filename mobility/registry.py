"""The partner registry: who is in the consortium, which feeds they send, and how to reach them.

`partners.yaml` is the one place a partner is configured. Everything else (the ingest CLI, the
Airflow DAGs, the simulator) reads it through `load_registry`, so adding a partner needs no code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mobility.settings import REGISTRY_PATH

Protocol = Literal["mds", "gbfs", "gtfs", "file_drop"]
FeedKind = Literal[
    "mds_trips",
    "mds_events",
    "mds_vehicle_status",
    "gbfs",
    "gtfs_schedule",
    "ridehail_trips",
    "bikeshare_trips",
]
Schedule = Literal["every_5_minutes", "hourly", "daily"]

# Which protocol carries which feed: a registry entry that pairs them otherwise is a mistake.
PROTOCOL_OF_FEED: dict[str, str] = {
    "mds_trips": "mds",
    "mds_events": "mds",
    "mds_vehicle_status": "mds",
    "gbfs": "gbfs",
    "gtfs_schedule": "gtfs",
    "ridehail_trips": "file_drop",
    "bikeshare_trips": "file_drop",
}

_SLUG = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


class RegistryError(ValueError):
    """A malformed registry; the message names the file, the partner and the field."""


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` as docker-compose does."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise KeyError(name)
        return default

    return _ENV_REF.sub(sub, value)


class FeedAuth(BaseModel):
    """How the city authenticates to a partner's endpoint.

    ``bearer``: the feed's ``credential`` is a static token. ``oauth2_client_credentials``: the
    credential is the client secret; a short-lived token is obtained from ``token_url`` with the
    client-credentials grant (RFC 6749 section 4.4) and renewed when it expires.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["bearer", "oauth2_client_credentials"] = "bearer"
    token_url: str | None = None
    client_id: str | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _oauth_needs_endpoint(self) -> "FeedAuth":
        if self.type == "oauth2_client_credentials" and not (self.token_url and self.client_id):
            raise ValueError("oauth2_client_credentials needs 'token_url' and 'client_id'")
        return self

    def token_endpoint(self) -> str | None:
        return expand_env(self.token_url) if self.token_url else None


class Feed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    feed: FeedKind
    protocol: Protocol
    schedule: Schedule
    contract: str = Field(pattern=r"^[a-z][a-z0-9_]*@\d+\.\d+\.\d+$")
    endpoint: str | None = None
    version: str | None = None
    credential: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    auth: FeedAuth = FeedAuth()
    drop_folder: str | None = None
    filename_pattern: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Feed":
        expected = PROTOCOL_OF_FEED[self.feed]
        if self.protocol != expected:
            raise ValueError(f"feed '{self.feed}' is carried by protocol '{expected}', not '{self.protocol}'")
        if self.protocol == "file_drop":
            if not self.drop_folder or not self.filename_pattern:
                raise ValueError("a file_drop feed needs 'drop_folder' and 'filename_pattern'")
            if "{date}" not in self.filename_pattern:
                raise ValueError("'filename_pattern' must contain '{date}'")
        elif not self.endpoint:
            raise ValueError(f"a '{self.protocol}' feed needs an 'endpoint'")
        if self.protocol == "mds" and not self.credential:
            raise ValueError("an MDS feed needs a 'credential' (the name of its token secret)")
        if self.auth.type != "bearer" and not self.credential:
            raise ValueError(f"'{self.auth.type}' auth needs a 'credential' (the name of the client secret)")
        return self

    @property
    def contract_name(self) -> str:
        return self.contract.split("@", 1)[0]

    @property
    def contract_version(self) -> str:
        return self.contract.split("@", 1)[1]

    def endpoint_url(self) -> str:
        if self.endpoint is None:
            raise ValueError(f"feed {self.feed} has no endpoint")
        return expand_env(self.endpoint)


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    kind: Literal["scooter_operator", "bikeshare_operator", "transit_agency", "ridehail"]
    mds_provider_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )
    feeds: list[Feed] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError("must be a lower-case slug (letters, digits, underscore; 2-32 characters)")
        return v

    @model_validator(mode="after")
    def _mds_needs_provider_id(self) -> "Partner":
        if any(f.protocol == "mds" for f in self.feeds) and not self.mds_provider_id:
            raise ValueError("a partner with MDS feeds needs 'mds_provider_id'")
        kinds = [f.feed for f in self.feeds]
        if len(kinds) != len(set(kinds)):
            raise ValueError("a feed kind is listed twice")
        return self

    def feed(self, kind: str) -> Feed:
        for f in self.feeds:
            if f.feed == kind:
                return f
        raise KeyError(f"partner '{self.id}' has no feed '{kind}'")

    def feed_by_protocol(self, protocol: str) -> Feed | None:
        """The first feed of this partner speaking `protocol` (they share endpoint and credential)."""
        return next((f for f in self.feeds if f.protocol == protocol), None)


_CHECK_HOUR = re.compile(r"^([01]\d|2[0-3]):00$")


class Compliance(BaseModel):
    """What the city requires of its vehicle operators (checked in mart_partner_compliance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # share of each operator's deployed fleet that must stand in equity zones (Chicago: 50 %)
    equity_zone_required_share: float = Field(default=0.5, ge=0, le=1)
    # local wall-clock hours at which deployment is checked
    check_hours: list[str] = Field(default_factory=lambda: ["07:00", "12:00", "17:00"], min_length=1)
    # partner id -> most vehicles it may deploy at once
    fleet_caps: dict[str, int] = Field(default_factory=dict)

    @field_validator("check_hours")
    @classmethod
    def _whole_hours(cls, v: list[str]) -> list[str]:
        bad = [h for h in v if not _CHECK_HOUR.match(h)]
        if bad:
            raise ValueError(f"check hours are whole local hours 'HH:00'; got {bad}")
        return v

    @field_validator("fleet_caps")
    @classmethod
    def _positive_caps(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: c for k, c in v.items() if c < 1}
        if bad:
            raise ValueError(f"fleet caps must be at least 1; got {bad}")
        return v

    @property
    def local_hours(self) -> list[int]:
        return sorted({int(h[:2]) for h in self.check_hours})


class Consortium(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    timezone: str = "UTC"
    k_anonymity: int = Field(default=10, ge=2)
    raw_retention_days: int = Field(default=90, ge=1)
    compliance: Compliance = Field(default_factory=Compliance)


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    consortium: Consortium
    partners: list[Partner] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Registry":
        ids = [p.id for p in self.partners]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"partner ids must be unique; repeated: {', '.join(dupes)}")
        unknown = sorted(set(self.consortium.compliance.fleet_caps) - set(ids))
        if unknown:
            raise ValueError(f"consortium compliance fleet_caps name unknown partner(s): {', '.join(unknown)}")
        return self

    def partner(self, partner_id: str) -> Partner:
        for p in self.partners:
            if p.id == partner_id:
                return p
        raise KeyError(f"no partner '{partner_id}' in the registry")

    def feeds(self, kind: str | None = None) -> list[tuple[Partner, Feed]]:
        """Every (partner, feed) pair, optionally of one feed kind, in registry order."""
        return [(p, f) for p in self.partners for f in p.feeds if kind is None or f.feed == kind]


def _describe(raw: dict, loc: tuple) -> str:
    """Turn a pydantic error location into 'partner X, feed Y, field Z'."""
    parts: list[str] = []
    node = raw
    i = 0
    while i < len(loc):
        key = loc[i]
        if key == "partners" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            idx = loc[i + 1]
            pid = (node.get("partners") or [{}])[idx].get("id", f"#{idx + 1}") if isinstance(node, dict) else idx
            parts.append(f"partner '{pid}'")
            node = node["partners"][idx]
            i += 2
            continue
        if key == "feeds" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            idx = loc[i + 1]
            try:
                fname = node["feeds"][idx].get("feed", f"#{idx + 1}")
            except (KeyError, IndexError, TypeError, AttributeError):
                fname = f"#{idx + 1}"
            parts.append(f"feed '{fname}'")
            node = node["feeds"][idx] if isinstance(node, dict) else node
            i += 2
            continue
        if isinstance(key, str) and not key.startswith(("function-", "literal")):
            parts.append(f"field '{key}'")
        i += 1
    return ", ".join(parts) or "top level"


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate the registry; errors name the file, the partner and the field."""
    path = Path(path or os.environ.get("MOBILITY_REGISTRY", REGISTRY_PATH))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RegistryError(f"{path}: expected a mapping with 'consortium' and 'partners'")
    try:
        return Registry.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {_describe(raw, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise RegistryError("\n".join(lines)) from None
