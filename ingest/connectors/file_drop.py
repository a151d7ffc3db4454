"""File-drop "client": a partner's drop folder, with atomic claims.

Layout of ``DIR/drops/<drop_folder>/``: the partner writes files at the top (atomically: a
``.tmp`` or dot-file is ignored until renamed); a file is claimed by renaming it into
``processing/`` (a rename is atomic, so two workers never both get it), and after landing it is
moved to ``done/`` or ``rejected/``. The partner is the owner of the folder, never whatever the
file says; the file's date comes from its name, which must match the registry's
``filename_pattern`` (``{date}`` = ``YYYY-MM-DD``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ingest.connectors.base import FeedError, Fetched, now_utc

log = logging.getLogger(__name__)

PROCESSING, DONE, REJECTED = "processing", "done", "rejected"
_CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class DropSettings:
    folder: Path  # DIR/drops/<drop_folder>
    filename_pattern: str  # e.g. "rideco-trips-{date}.csv"
    max_bytes: int = 2 << 30  # a file larger than this is not a daily file we land

    def __post_init__(self) -> None:
        if "{date}" not in self.filename_pattern:
            raise ValueError(f"filename_pattern {self.filename_pattern!r} must contain '{{date}}'")


class DropRefused(FeedError):
    """A dropped file refused before landing (its name or size); the message says why."""


class MisnamedFile(DropRefused):
    """A dropped file whose name breaks the drop rule; the message names the file and the rule."""


@dataclass(frozen=True)
class DroppedFile(Fetched):
    """A claimed file; `path` is where it sits while claimed (under ``processing/``), and its
    `content` too: a daily file of up to `DropSettings.max_bytes` is landed from disk, never read whole."""

    path: Path = Path()
    day: date = date.min


class DropFolder:
    def __init__(self, settings: DropSettings):
        self.settings = settings
        before, _, after = settings.filename_pattern.partition("{date}")
        self._name = re.compile(f"^{re.escape(before)}(?P<date>\\d{{4}}-\\d{{2}}-\\d{{2}}){re.escape(after)}$")

    @property
    def folder(self) -> Path:
        return self.settings.folder

    def filename(self, day: date) -> str:
        return self.settings.filename_pattern.format(date=day.isoformat())

    def day_of(self, name: str) -> date:
        """The date a file name stands for; `MisnamedFile` if it breaks the drop rule."""
        match = self._name.match(name)
        try:
            if match:
                return date.fromisoformat(match.group("date"))
        except ValueError:
            pass
        raise MisnamedFile(
            f"file '{name}' in drop folder '{self.folder.name}' does not match the rule "
            f"'{self.settings.filename_pattern}' ({{date}} = a real date as YYYY-MM-DD); "
            f"moved to {REJECTED}/"
        )

    def waiting(self) -> list[Path]:
        """Files dropped and not yet claimed (partial uploads, dot-files and folders excluded)."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p for p in self.folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".tmp")
        )

    def reject_misnamed(self) -> list[str]:
        """Move every waiting file that breaks the naming rule to ``rejected/``; the reasons."""
        reasons = []
        for path in self.waiting():
            try:
                self.day_of(path.name)
            except MisnamedFile as exc:
                if self._move(path, REJECTED):
                    log.warning("%s", exc)
                    reasons.append(str(exc))
        return reasons

    def pick_up(self, day: date) -> DroppedFile | None:
        """Claim the file for `day`; None if there is none (or another worker won it).

        A file left in ``processing/`` by an interrupted run is taken over: landing is
        idempotent, so landing it twice is harmless, while leaving it would lose the day.
        """
        name = self.filename(day)
        claimed = self.folder / PROCESSING / name
        claimed.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self.folder / name, claimed)
        except FileNotFoundError:
            if not claimed.exists():
                return None
            log.warning("resuming %s, claimed by an earlier run that did not finish", claimed)
        size = claimed.stat().st_size
        if size > self.settings.max_bytes:
            self.finish(claimed, ok=False)
            raise DropRefused(f"file '{name}' is {size} bytes, over the {self.settings.max_bytes} limit; "
                              f"moved to {REJECTED}/")
        return DroppedFile(
            content=claimed, url=claimed.as_uri(), status=200,
            content_type=_CONTENT_TYPES.get(claimed.suffix, "application/octet-stream"),
            fetched_at=now_utc(), path=claimed, day=day,
        )

    def finish(self, claimed: Path, *, ok: bool) -> Path | None:
        """Move a claimed file to ``done/`` (landed) or ``rejected/`` (refused); its new path."""
        return self._move(claimed, DONE if ok else REJECTED)

    def release(self, claimed: Path) -> None:
        """Put a claimed file back for the next run (landing failed for a reason not its own)."""
        try:
            os.rename(claimed, self.folder / claimed.name)
        except FileNotFoundError:
            pass

    def _move(self, path: Path, to: str) -> Path | None:
        target = self.folder / to / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)  # a corrected re-drop replaces the earlier copy; raw keeps both
        except FileNotFoundError:
            log.info("%s was moved by another run", path)
            return None
        return target
