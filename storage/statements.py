"""Counting the statements a process sends to its database (round trips), for benchmarks and
``/metrics``.

``StatementCounter.attach(engine)`` counts every statement SQLAlchemy executes
(``before_cursor_execute``: one per ``execute`` or ``executemany``), every transaction begun and
committed (psycopg sends ``BEGIN`` and ``COMMIT`` as statements of their own), and, through the
pool connection's ``info``, the prepared statements of ``storage.prepared`` (which bypass
SQLAlchemy's events).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

INFO_KEY = "parlons.statements"


@dataclass
class Counts:
    statements: int = 0  # SQLAlchemy executions and prepared statements
    begins: int = 0
    commits: int = 0

    @property
    def round_trips(self) -> int:
        return self.statements + self.begins + self.commits

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.statements - other.statements,
            self.begins - other.begins,
            self.commits - other.commits,
        )


class StatementCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counts()

    def add(self, statements: int = 1) -> None:
        with self._lock:
            self._counts.statements += statements

    def snapshot(self) -> Counts:
        with self._lock:
            c = self._counts
            return Counts(c.statements, c.begins, c.commits)

    def _begin(self, *_args: Any) -> None:
        with self._lock:
            self._counts.begins += 1

    def _commit(self, *_args: Any) -> None:
        with self._lock:
            self._counts.commits += 1

    def _execute(self, *_args: Any) -> None:
        self.add()

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        record.info[INFO_KEY] = self

    def attach(self, engine: Engine) -> StatementCounter:
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)
        return self

    def detach(self, engine: Engine) -> None:
        event.remove(engine, "before_cursor_execute", self._execute)
        event.remove(engine, "begin", self._begin)
        event.remove(engine, "commit", self._commit)
        event.remove(engine.pool, "checkout", self._checkout)
