"""DuckDB connections with the spatial extension, installed offline from the duckdb-extension-spatial wheel.

The extension cannot be downloaded on our machines, but PyPI's ``duckdb-extension-spatial`` ships
the binary for the matching DuckDB version. Installing it once from that file puts it in DuckDB's
extension directory, after which a plain ``INSTALL spatial; LOAD spatial`` (what dbt-duckdb runs)
works offline too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)


class SpatialExtensionError(RuntimeError):
    """The spatial extension could not be installed or loaded."""


def extension_file() -> Path:
    """The spatial extension binary shipped by the duckdb-extension-spatial wheel for this DuckDB."""
    hint = f"install it with: pip install 'duckdb-extension-spatial=={duckdb.__version__}'"
    try:
        import duckdb_extension_spatial
    except ImportError as exc:
        raise SpatialExtensionError(f"the duckdb-extension-spatial package is not installed; {hint}") from exc
    path = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "spatial.duckdb_extension"
    )
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.parent.glob("v*"))
        raise SpatialExtensionError(
            f"no spatial extension for DuckDB {duckdb.__version__} at {path} "
            f"(the wheel ships: {', '.join(shipped) or 'nothing'}); {hint}"
        )
    return path


def _installed(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
    ).fetchone()
    return bool(row and row[0])


def install_spatial(con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Install the spatial extension from the wheel's file, once; a no-op if already installed.

    Installs into ``con``'s extension directory (DuckDB's default if ``con`` is None).
    """
    own = con is None
    con = con or duckdb.connect()
    try:
        if _installed(con):
            return
        path = extension_file()
        # the path is ours (package dir), but quote it properly anyway
        con.execute(f"INSTALL '{str(path).replace(chr(39), chr(39) * 2)}'")
        log.info("installed DuckDB spatial extension from %s", path)
    except duckdb.Error as exc:
        raise SpatialExtensionError(f"installing the DuckDB spatial extension failed: {exc}") from exc
    finally:
        if own:
            con.close()


def ensure_spatial(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Load the spatial extension into ``con``, installing it from the wheel first if needed."""
    try:
        con.execute("LOAD spatial")
    except duckdb.Error:
        install_spatial(con)
        try:
            con.execute("LOAD spatial")
        except duckdb.Error as exc:
            raise SpatialExtensionError(f"loading the DuckDB spatial extension failed: {exc}") from exc
    return con


def connect(
    path: str | Path | None = None, read_only: bool = False, config: dict[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory if ``path`` is None) with the spatial extension loaded;
    ``config``: DuckDB settings, e.g. ``Workdir.duckdb_config()`` (memory cap, spill folder)."""
    if path is None and read_only:
        raise ValueError("read_only needs a database path: an in-memory database cannot be read-only")
    con = duckdb.connect(str(path) if path is not None else ":memory:", read_only=read_only, config=config or {})
    try:
        return ensure_spatial(con)
    except BaseException:
        con.close()
        raise
