"""Intake of partner feeds: connectors (one per protocol) and landing under contract."""

import os

import pyarrow as pa

from mobility.settings import ARROW_MEMORY_POOL_ENV


def _arrow_memory_pool() -> None:
    """Arrow's buffers come from jemalloc in every process that ingests (landing, check worker,
    `mobility validate`), unless the operator chose a pool with Arrow's $ARROW_DEFAULT_MEMORY_POOL.
    Arrow's default here, mimalloc, hands freed chunks back to the kernel within milliseconds, so
    each chunk of a big batch faults its pages in again, zeroed; two MDS landing processes side by
    side peaked about 80 MB lower with jemalloc (BENCHMARKS.md, 2026-11-28)."""
    if os.environ.get(ARROW_MEMORY_POOL_ENV):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc keeps its default
        pass


_arrow_memory_pool()
