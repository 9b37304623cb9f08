"""Prepared statements: the hot path's SQL, compiled once per dialect and run straight on the
DBAPI connection of the caller's unit of work.

Every event runs a dozen small statements (record it in the inbox, find the citizen and the
dialogue, count the flood window, write the effect, store the reply, mark the event done). On
SQLite each one costs 2–3 µs in the driver and 12–15 µs in SQLAlchemy's per-execution machinery
(cache key, execution context, result wrapping) — more than the statement itself. ``Prepared``
keeps what that machinery gives us and drops the rest:

- the SQL text and parameter order come from SQLAlchemy's compiler (once per dialect), so a
  statement is still written with SQLAlchemy Core, and PostgreSQL and SQLite each get their own
  text (``ON CONFLICT``, ``FOR UPDATE``, ``RETURNING``, parameter style);
- values go through the columns' own bind and result processors (aware UTC datetimes, JSON,
  booleans), so what comes back is what ``Connection.execute`` would return;
- literal values bound in the statement and scalar column defaults (``status="pending"``) are
  filled in as SQLAlchemy does; a statement needing anything else (expanding ``IN``, Python
  callables as defaults) is refused when it is prepared, not silently run differently;
- the statements run inside the session's transaction (the same DBAPI connection, after the
  session's ``BEGIN``), and driver errors are raised as SQLAlchemy's ``DBAPIError`` subclasses
  (``IntegrityError``…), as with ``Connection.execute``.

What is given up: SQLAlchemy's ``before_cursor_execute`` events and echo logging do not see
these statements (storage.statements counts them itself). Like ``Session.execute`` they
autoflush: pending ORM changes are flushed first, so a statement sees them. This module is the
only one that uses SQLAlchemy internals; pyproject.toml pins SQLAlchemy to the line it was built
against, and tests/test_prepared.py checks the behaviours it relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

Processor = Callable[[Any], Any]
T = TypeVar("T")
_CALLER = object()  # a parameter the caller supplies


class PreparedError(Exception):
    """A statement ``Prepared`` cannot run faithfully (found when it is first compiled)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positional: bool
    # One entry per parameter, in the driver's order (positional) or per name (named):
    # (name, processor, fixed) — ``fixed`` is the processed value of a literal or a default
    # (``_CALLER`` when the caller supplies it, to go through ``processor``).
    params: tuple[tuple[str, Processor | None, Any], ...]
    results: tuple[Processor | None, ...]  # one per returned column
    any_result_processor: bool
    dbapi_error: type[BaseException]


class Prepared:
    """One Core statement, compiled once per dialect, executed on the unit of work's DBAPI
    connection. ``columns`` names the parameters of an INSERT/UPDATE built without explicit
    ``bindparam``s (``insert(table)``): the compiled text depends on them."""

    __slots__ = ("_plans", "columns", "statement")

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.columns = tuple(columns) if columns is not None else None
        self._plans: dict[str, _Plan] = {}

    # ------------------------------------------------------------------ running

    def rows(self, session: Session, params: Mapping[str, Any] | None = None) -> list[tuple]:
        """All result rows (tuples), processed as SQLAlchemy would."""
        plan, conn = self._prepare(session)
        cursor = self._execute(plan, conn, params or {})
        fetched = cursor.fetchall()
        cursor.close()
        return self._process(plan, fetched)

    def first(self, session: Session, params: Mapping[str, Any] | None = None) -> tuple | None:
        """The first row, or None. (The rest, if any, is discarded.)"""
        plan, conn = self._prepare(session)
        cursor = self._execute(plan, conn, params or {})
        row = cursor.fetchone()
        if row is not None:
            # Step the statement to its end: SQLite completes an INSERT … RETURNING only then.
            cursor.fetchall()
        cursor.close()
        if row is None:
            return None
        return self._process(plan, [row])[0]

    def scalar(self, session: Session, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(session, params)
        return None if row is None else row[0]

    def run(self, session: Session, params: Mapping[str, Any] | None = None) -> int:
        """Execute a statement with no result rows; returns the row count."""
        plan, conn = self._prepare(session)
        cursor = self._execute(plan, conn, params or {})
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def run_many(self, session: Session, many: Sequence[Mapping[str, Any]]) -> None:
        """Execute a statement with no result rows once per parameter set (DBAPI
        ``executemany``)."""
        if not many:
            return
        plan, conn = self._prepare(session)
        cursor = conn.cursor()
        try:
            cursor.executemany(plan.sql, [self._parameters(plan, p) for p in many])
        except plan.dbapi_error as error:
            raise _wrap(plan, many, error) from error
        finally:
            cursor.close()

    # ------------------------------------------------------------------ internals

    def _prepare(self, session: Session) -> tuple[_Plan, Any]:
        # Autoflush, as Session.execute would: pending ORM changes are visible to the statement.
        # _is_clean() is O(1) (the identity map keeps its modified set); SQLAlchemy is pinned
        # to the 2.1 line in pyproject.toml for these internals.
        if session.autoflush and not session._is_clean():
            session.flush()
        conn, dialect = dbapi_connection(session)
        counter = session.info["_prepared_connection"][3]
        if counter is not None:  # storage.statements: SQLAlchemy's events do not see us
            counter.add()
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = self._compile(dialect)
        return plan, conn

    def _execute(self, plan: _Plan, conn: Any, params: Mapping[str, Any]) -> Any:
        cursor = conn.cursor()
        try:
            cursor.execute(plan.sql, self._parameters(plan, params))
        except plan.dbapi_error as error:
            cursor.close()
            raise _wrap(plan, params, error) from error
        return cursor

    @staticmethod
    def _parameters(plan: _Plan, params: Mapping[str, Any]) -> Any:
        try:
            values = [
                fixed
                if fixed is not _CALLER
                else (params[name] if processor is None else processor(params[name]))
                for name, processor, fixed in plan.params
            ]
        except KeyError as missing:
            raise PreparedError(f"missing parameter {missing} for {plan.sql!r}") from None
        if plan.positional:
            return values
        return {name: value for (name, _p, _f), value in zip(plan.params, values, strict=True)}

    @staticmethod
    def _process(plan: _Plan, rows: list[Any]) -> list[tuple]:
        if not plan.any_result_processor:
            return [tuple(row) for row in rows]
        processors = plan.results
        return [
            tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True))
            for row in rows
        ]

    def _compile(self, dialect: Dialect) -> _Plan:
        kwargs: dict[str, Any] = {}
        if self.columns is not None:
            kwargs["column_keys"] = list(self.columns)
        compiled = self.statement.compile(dialect=dialect, **kwargs)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise PreparedError("expanding or literal-execute parameters are not supported")
        supplied = set(self.columns or ())
        fixed: dict[str, Any] = {}
        processors: dict[str, Processor | None] = {}
        by_column = {c.key: c for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        for name, bind in compiled.binds.items():
            processor = processors[name] = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.callable is not None:
                raise PreparedError(f"bind {name!r} has a callable value")
            if bind.required or name in supplied:
                continue  # the caller's value, processed at each execution
            value = bind.value
            column = by_column.get(name)
            if column is not None:
                default = column.default
                if default is None or not default.is_scalar:
                    raise PreparedError(f"column {name!r} needs a value (no scalar default)")
                value = default.arg  # type: ignore[attr-defined]
            fixed[name] = processor(value) if processor is not None else value
        if compiled.positional:
            assert compiled.positiontup is not None
            names = tuple(compiled.positiontup)
        else:
            names = tuple(compiled.binds)
        results: list[Processor | None] = []
        returned = getattr(self.statement, "exported_columns", None)
        for column in returned or ():
            results.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
        dbapi = dialect.loaded_dbapi
        return _Plan(
            sql=compiled.string,
            positional=compiled.positional,
            params=tuple((n, processors[n], fixed.get(n, _CALLER)) for n in names),
            results=tuple(results),
            any_result_processor=any(p is not None for p in results),
            dbapi_error=dbapi.Error,
        )


def in_session(session: Session, model: type[T], pk: Any) -> T | None:
    """The row with this primary key if the session already holds it (no SQL): what
    ``Session.get`` finds first, without its overhead."""
    key = _ModelInfo.of(model).mapper.identity_key_from_primary_key([pk])
    found: T | None = session.identity_map.get(key)
    return found


def dbapi_connection(session: Session) -> tuple[Any, Dialect]:
    """The DBAPI connection of the session's current transaction (beginning it if needed), and
    its dialect; remembered for the transaction, so the hot path asks the session once."""
    transaction = session.get_transaction()
    cached = session.info.get("_prepared_connection")
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1], cached[2]
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    dialect = connection.dialect
    counter = connection.connection.info.get("parlons.statements")  # storage.statements
    session.info["_prepared_connection"] = (session.get_transaction(), dbapi, dialect, counter)
    return dbapi, dialect


def _wrap(plan: _Plan, params: Any, error: BaseException) -> BaseException:
    """The driver's error as SQLAlchemy raises it from ``Connection.execute``."""
    return exc.DBAPIError.instance(plan.sql, params, error, plan.dbapi_error)  # type: ignore[arg-type]


def persistent(session: Session, model: type[T], row: tuple | None) -> T | None:
    """A row of a ``Prepared`` ``select(model)`` (all its columns, in table order) as the
    session's persistent ORM object: the one already in the identity map if there is one (it is
    authoritative: it may hold changes not flushed yet), else a new, clean one — as a query
    through the ORM would give, for a fraction of its cost. The object is ``pinned``."""
    if row is None:
        return None
    info = _ModelInfo.of(model)
    found = in_session(session, model, row[info.pk_index])
    if found is None:
        found = info.manager.new_instance()
        found.__dict__.update(zip(info.keys, row, strict=True))
        make_transient_to_detached(found)
        session.add(found)
    return pinned(session, found)


def pinned(session: Session, row: T) -> T:
    """Keep a strong reference for the unit of work: the session's identity map holds rows
    weakly, so a row read twice in one event (by a handler, then by a service) would otherwise
    be fetched twice."""
    if row is not None:
        session.info.setdefault("pinned", []).append(row)
    return row


@dataclass(frozen=True, slots=True)
class _ModelInfo:
    mapper: Any
    manager: Any
    keys: tuple[str, ...]
    pk_index: int

    @classmethod
    def of(cls, model: type) -> _ModelInfo:
        found = _models.get(model)
        if found is None:
            found = _models[model] = cls._build(model)
        return found

    @classmethod
    def _build(cls, model: type) -> _ModelInfo:
        mapper: Any = sa_inspect(model)
        columns = list(mapper.columns)
        keys = tuple(mapper.get_property_by_column(c).key for c in columns)
        (pk,) = mapper.primary_key
        return cls(mapper, manager_of_class(model), keys, columns.index(pk))


_models: dict[type, _ModelInfo] = {}
