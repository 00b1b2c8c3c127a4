"""The server's hold on the state database: one DuckDB instance for the process, one unit of work at a time,
deploys and the other writes of requests (budget samples) committed in batches.

DuckDB lets one process open a file; the server is that process for as long as it runs (CLI commands
and pipelines talk to it instead of opening the file). An anchor connection keeps the database open
between requests (reopening it costs ~0.2 s here, a unit of work on an open instance milliseconds), and
migrations run once, at start.
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from nthlayer.state.events import Deploy
from nthlayer.ops.deploys import record_deploys
from nthlayer.state.db import connect, state_path, transaction

if TYPE_CHECKING:
    import duckdb

MAX_BATCH = 500
Job = Callable[["duckdb.DuckDBPyConnection"], Any]
WRITE_WAIT_SECONDS = 60.0


class StateStore:
    def __init__(self, path: str | None) -> None:
        resolved = state_path(path)
        self.path = resolved if resolved == ":memory:" else os.path.abspath(resolved)
        self._lock = threading.Lock()
        self._anchor: Any = None
        # A deploy (Deploy, actor) or any other write (a function of the connection), and who waits for it.
        self._writes: queue.Queue[tuple[Deploy | Job, str | None, Future[Any]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    def open(self) -> None:
        """Create or migrate the database, keep it open, start the deploy writer."""
        import duckdb

        with connect(self.path):
            pass
        self._anchor = duckdb.connect(self.path)
        self._writer = threading.Thread(target=self._write_loop, name="nthlayer-deploy-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(timeout=WRITE_WAIT_SECONDS)
        if self._anchor is not None:
            with self._lock:
                self._anchor.close()
            self._anchor = None

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction, alone: the server's threads take turns (no write-write conflicts).

        A cursor of the anchor, not :func:`nthlayer.state.connect`: the database was opened and migrated
        once, and connect() narrows the process umask while it runs, which would make files that other
        threads (spec writes) or child processes (builds) create meanwhile private."""
        with self._lock:
            con = self._anchor.cursor()
            try:
                con.execute("SET TimeZone = 'UTC'")
                with transaction(con, self.path):
                    yield con
            finally:
                con.close()

    def record_deploy(self, deploy: Deploy, actor: str | None) -> bool:
        """Queue a deploy for the writer and wait for its commit; whether it was new."""
        done: Future[bool] = Future()
        self._writes.put((deploy, actor, done))
        return done.result(timeout=WRITE_WAIT_SECONDS)

    def write(self, job: Job) -> Any:
        """A :data:`nthlayer.state.db.Writer`: run ``job(con)`` in the writer's next transaction, committed
        with every other write waiting then (one commit, one fsync, for all), and return its result."""
        done: Future[Any] = Future()
        self._writes.put((job, None, done))
        return done.result(timeout=WRITE_WAIT_SECONDS)

    def _write_loop(self) -> None:
        # Group commit: every write waiting when the writer comes round goes into one transaction,
        # so N pipelines posting at once cost about one commit (one fsync of the WAL), not N.
        while True:
            first = self._writes.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[Deploy | Job, str | None, Future[Any]]]) -> None:
        try:
            with self.connection() as con:
                by_actor: dict[str | None, list[int]] = {}
                results: dict[int, Any] = {}
                for n, (item, actor, _) in enumerate(batch):
                    if isinstance(item, Deploy):
                        by_actor.setdefault(actor, []).append(n)
                    else:
                        results[n] = item(con)
                for actor, positions in by_actor.items():  # one statement for the deploys of each actor
                    added = record_deploys(con, [batch[n][0] for n in positions], actor=actor)  # type: ignore[misc]
                    results.update(zip(positions, added))
        except BaseException as exc:  # every waiting request learns why (StateUnavailable: 503)
            for _, _, done in batch:
                done.set_exception(exc)
            return
        for n, (_, _, done) in enumerate(batch):
            done.set_result(results[n])
