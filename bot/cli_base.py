"""What every ``parlons`` command shares.

* ``open_app(mode)`` opens the application the way the command needs the database:
  ``"read"`` (listings, exports: opened read-only, never migrated; an uninitialised or outdated
  schema is reported), ``"write"`` (the database must exist; pending migrations are applied),
  ``"create"`` (``db upgrade`` and the demo: the SQLite file and its directory are created).
* ``ParlonsGroup`` is the one place where expected failures (bad settings, an unreachable or
  missing database, an unknown revision...) become one line on stderr and exit code 2. The
  global ``--debug`` option lets the traceback through instead. Secrets never reach that line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from typer._click import ClickException, Context
from typer.core import TyperGroup

from bot.app import App, build_app
from bot.engine import Clock
from bot.logs import configure_logging, redact, secrets_of
from bot.settings import Settings, SettingsFileError
from storage.db import Database, normalise_url, utcnow
from storage.errors import DatabaseError, InvalidDatabaseUrl, shown_url, sqlite_database

Mode = Literal["read", "write", "create"]
DEBUG_KEY = "parlons.debug"
UPGRADE_HINT = "run `parlons db upgrade`"


class CliError(Exception):
    """A problem the person running the command can fix: its text is the whole message."""


# --------------------------------------------------------------------------- opening


def _sqlite_file(url: str) -> Path | None:
    database = sqlite_database(normalise_url(url))
    return None if database is None else Path(database)


def check_location(settings: Settings, mode: Mode) -> None:
    """A SQLite database must exist unless the command creates it on purpose: a typo in the
    path must not silently start an empty database."""
    path = _sqlite_file(settings.database_url)
    if path is None or mode == "create":
        return
    if not path.parent.is_dir():
        raise CliError(
            f"no database at {path}: the directory {path.parent} does not exist "
            f"(check PARLONS_DATABASE_URL, or create the database: {UPGRADE_HINT})"
        )
    if not path.exists():
        raise CliError(f"no database at {path}: create it first ({UPGRADE_HINT})")
    if not path.is_file():
        raise CliError(f"{path} is not a database file")


def check_schema(db: Database, *, outdated_ok: bool = False) -> None:
    """Raise CliError unless the database's schema is exactly this version's (no migration);
    with ``outdated_ok``, only for a revision this version does not know (a newer one)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))  # reading the revision is not news
    try:
        with db.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        quiet.setLevel(level)
    script = ScriptDirectory.from_config(db.alembic_config())
    heads = set(script.get_heads())
    if current == heads:
        return
    if not current and outdated_ok:
        return
    if not current:
        raise CliError(f"the database is not initialised: {UPGRADE_HINT}")
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise CliError(
            f"the database is at revision {', '.join(unknown)}, unknown to this version of "
            "Parlons (was it upgraded by a newer version?)"
        )
    if outdated_ok:
        return
    raise CliError(
        f"the database is out of date (revision {', '.join(sorted(current))}; this version "
        f"needs {', '.join(sorted(heads))}): {UPGRADE_HINT}"
    )


def open_app(
    mode: Mode = "write",
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    extra_secrets: Iterable[str] = (),
) -> App:
    """The application for a command; logging configured first, with every secret of the
    settings (and ``extra_secrets``, e.g. derived ones) redacted from every log line."""
    settings = settings or Settings()
    configure_logging(settings, extra_secrets=extra_secrets)
    check_location(settings, mode)
    application = build_app(
        settings, clock=clock or utcnow, migrate=False, read_only=mode == "read"
    )
    try:
        check_schema(application.db, outdated_ok=mode != "read")
        if mode != "read":
            application.db.upgrade()
    except BaseException:
        application.close()
        raise
    return application


# --------------------------------------------------------------------------- errors


def _setting_name(loc: tuple[Any, ...]) -> str:
    return "PARLONS_" + "__".join(str(part) for part in loc).upper()


def _database_detail(exc: DatabaseError) -> str:
    detail = " ".join(str(exc.orig).split()) if exc.orig is not None else str(exc)
    lowered = detail.lower()
    if "file is not a database" in lowered:
        return "the file is not a SQLite database"
    if "readonly database" in lowered or "read-only" in lowered:
        return f"the database is read-only ({detail})"
    if "unable to open database file" in lowered:
        return "cannot open the database file (missing, or no permission)"
    return detail


def _where(url: str | None) -> str:
    if not url:
        return "the database"
    try:
        return shown_url(normalise_url(url))
    except Exception:
        return "the database"


def describe(exc: BaseException, settings_url: str | None = None) -> str | None:
    """One line for an expected failure, None for a bug."""
    if isinstance(exc, CliError | SettingsFileError):
        return str(exc)
    if isinstance(exc, ValidationError):
        problems = [
            f"{_setting_name(tuple(e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
        return "invalid setting " + "; ".join(problems)
    if isinstance(exc, SettingsError):
        found = re.search(r'field "(\w+)"', str(exc))
        name = _setting_name((found.group(1),)) if found else "value"
        return f'invalid setting {name}: cannot parse it (lists are JSON: \'["a", "b"]\')'
    if isinstance(exc, DatabaseError):
        return f"{_where(settings_url)}: {_database_detail(exc)}"
    if isinstance(exc, InvalidDatabaseUrl):
        return f"invalid database URL: {exc}"
    from alembic.util import CommandError

    if isinstance(exc, CommandError):
        found = re.search(r"Can't locate revision identified by '([^']*)'", str(exc))
        if found:
            return (
                f"unknown revision '{found.group(1)}' (not a migration of this version of "
                "Parlons; `parlons db upgrade` with no argument goes to the latest)"
            )
        return f"database migration failed: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.filename or 'file'}: {exc.strerror or exc}"
    return None


def _known_secrets() -> tuple[list[str], str | None]:
    """The secrets to keep out of an error line, even when the settings do not load."""
    found = [
        value
        for key, value in os.environ.items()
        if key.startswith("PARLONS_")
        and any(word in key for word in ("TOKEN", "SECRET", "PASSWORD", "KEY"))
    ]
    try:
        settings = Settings()
    except Exception:
        return found, os.environ.get("PARLONS_DATABASE_URL")
    return [*found, *secrets_of(settings)], settings.database_url


class ParlonsGroup(TyperGroup):
    """The top-level command group: expected failures end as one line and exit code 2."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except BrokenPipeError:  # the reader went away (`parlons ... | head`): nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as exc:
            if ctx.meta.get(DEBUG_KEY):
                raise
            secrets, url = _known_secrets()
            message = describe(exc, url)
            code = 2
            if message is None:
                code = 1
                message = f"unexpected {type(exc).__name__}: {exc} (--debug shows the traceback)"
            line = " ".join(redact(message, secrets).split())
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code) from None
