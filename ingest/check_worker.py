"""The contract check of a big batch in a worker process, so checking and landing use two cores.

`land_batch` checks a batch chunk by chunk (`CheckStream`) and, as each chunk comes out, gates,
pseudonymises and writes it. In one process these take turns on the GIL: the CSV and JSON
readers and the vectorised rules let go of it, but the landing gate (GX), the keyed hash and the
check's own Python do not. A batch of `WORKER_MIN_BYTES` or more is therefore checked by a worker
process: it gets the batch first (and parses it while `land_batch` archives it), a dropped file as
its path, which it reads block by block, other bytes whole; then it sends back each chunk of
accepted rows as Arrow IPC and at last the check's result, while `land_batch` handles the chunks
already received.

Only CSV goes there: a JSON payload is one document, parsed whole before its first chunk can go
out, so a worker would only add its round trips (1M MDS trips in 10 pages landed 6% slower).

Workers are plain child interpreters (`python -m ingest.check_worker`), started on first use and
kept for later batches; each checks one batch at a time. A worker that dies takes its batch with
it (the caller sees an error, nothing is stored) and is not reused.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

import pyarrow as pa

from ingest.columnar import CheckStream, PayloadCheck
from ingest.contracts import Contract
from ingest.payloads import PayloadError, Raw
from mobility.settings import check_workers_enabled

# below this a batch is checked in the landing process: a worker's round trips would cost more
# than the overlap gains (a worker's first start costs about 0.3 s of imports)
WORKER_MIN_BYTES = 32 << 20


class WorkerDied(RuntimeError):
    """The check worker exited in the middle of a batch."""


class _Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.check_worker", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True,
        )
        theirs.close()
        self.conn = Connection(ours.detach())

    def close(self, *, busy: bool = False) -> None:
        """Stop the worker: an idle one reads end-of-file and exits, a busy one is killed."""
        self.conn.close()
        if busy:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_IDLE: list[_Worker] = []
_LOCK = threading.Lock()


def _take() -> _Worker:
    with _LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.process.poll() is None:
                return worker
    return _Worker()


def worker_pids() -> list[int]:
    """The idle check workers' process ids (the benchmark adds their CPU time and memory)."""
    with _LOCK:
        return [w.process.pid for w in _IDLE if w.process.poll() is None]


@atexit.register
def _stop_workers() -> None:
    with _LOCK:
        workers, _IDLE[:] = list(_IDLE), []
    for worker in workers:
        worker.close()


class WorkerCheckStream:
    """`CheckStream`'s interface (iterate for accepted tables or None, then `result`), checked by a
    worker. The batch goes to the worker on creation, so it parses it while the caller archives it:
    a file as its path (the worker reads it in blocks), bytes whole. `close` gives up the worker if
    the stream was not read to its end."""

    def __init__(self, contract: Contract, raw: Raw, *, window: tuple[datetime, datetime] | None = None,
                 track: tuple[str, ...] = ()):
        self.result: PayloadCheck | None = None
        self.worker: _Worker | None = _take()
        try:
            self.worker.conn.send((contract, window, track, str(raw) if isinstance(raw, Path) else None))
            if not isinstance(raw, Path):
                self.worker.conn.send_bytes(raw)
        except OSError as exc:
            pid = self.worker.process.pid
            self.close()
            raise WorkerDied(f"the check worker (pid {pid}) is gone: {exc!r}") from None

    def __iter__(self) -> Iterator[pa.Table | None]:
        try:
            while True:
                kind, payload = _receive(self.worker)
                if kind == "table":
                    yield payload
                elif kind == "restart":
                    yield None
                else:
                    with _LOCK:  # the worker is between jobs again
                        _IDLE.append(self.worker)
                    self.worker = None
                    if kind == "result":
                        self.result = payload
                        return
                    if kind == "payload_error":
                        raise PayloadError(payload)
                    raise RuntimeError(f"the check worker failed:\n{payload}")
        finally:
            self.close()

    def close(self) -> None:
        """Stop a worker left mid-batch (it died, or the caller stopped reading): not reusable."""
        if self.worker is not None:
            self.worker.close(busy=True)
            self.worker = None


def _receive(worker: _Worker) -> tuple[str, object]:
    try:
        kind, payload = worker.conn.recv()
        if kind == "table":
            payload = pa.ipc.open_stream(worker.conn.recv_bytes()).read_all()
        return kind, payload
    except (EOFError, OSError) as exc:
        raise WorkerDied(f"the check worker (pid {worker.process.pid}) exited mid-batch: {exc!r}") from None


@contextmanager
def check_stream(contract: Contract, raw: Raw, *, window: tuple[datetime, datetime] | None = None,
                 track: tuple[str, ...] = ()) -> Iterator[CheckStream | WorkerCheckStream]:
    """The check stream for one batch: in a worker for a big CSV one (started at once), else in this process."""
    size = raw.stat().st_size if isinstance(raw, Path) else len(raw)
    if contract.payload_format == "csv" and size >= WORKER_MIN_BYTES and check_workers_enabled():
        stream = WorkerCheckStream(contract, raw, window=window, track=track)
        try:
            yield stream
        finally:
            stream.close()
    else:
        yield CheckStream(contract, raw, window=window, track=track)


def _send_table(conn: Connection, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    conn.send(("table", None))
    conn.send_bytes(sink.getvalue())


def serve(conn: Connection) -> None:
    """The worker's loop: one job at a time until the landing process closes the connection."""
    while True:
        try:
            contract, window, track, path = conn.recv()
            raw = Path(path) if path else conn.recv_bytes()
        except EOFError:
            return
        try:
            # one thread: the landing process beside it keeps the other core busy, and reading
            # ahead only added CPU and 60 MB here (1M CSV rows landed no faster with it)
            stream = CheckStream(contract, raw, window=window, track=track, read_ahead=False)
            for table in stream:
                if table is None:
                    conn.send(("restart", None))
                else:
                    _send_table(conn, table)
            result: PayloadCheck = stream.result
            if result.result.streamed_rows is None:  # the row check's rows went out as one table
                rows = result.result.accepted.num_rows
                result = replace(result, result=replace(result.result, accepted=contract.arrow_schema().empty_table(),
                                                        streamed_rows=rows))
            conn.send(("result", result))
        except PayloadError as exc:
            conn.send(("payload_error", str(exc)))
        except Exception:  # noqa: BLE001 - reported to the landing process, which raises it
            conn.send(("error", traceback.format_exc()))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
