"""What bot/ needs to know about the database layer's errors and URLs, without importing
SQLAlchemy itself (storage/ is the only package that does)."""

from __future__ import annotations

from sqlalchemy import exc as _exc
from sqlalchemy.engine import make_url

# A failure reported by the database driver (``.orig`` is the driver's exception, or None).
DatabaseError = _exc.DBAPIError
# A database URL that cannot be parsed, or names a dialect or driver that is not installed.
InvalidDatabaseUrl: tuple[type[Exception], ...] = (_exc.ArgumentError, _exc.NoSuchModuleError)


def url_password(url: str) -> str | None:
    """The password in a database URL, if any (raises on a URL that cannot be parsed)."""
    password = make_url(url).password
    return None if password is None else str(password)


def sqlite_database(url: str) -> str | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(parsed.database)


def shown_url(url: str) -> str:
    """A database URL as it may be shown: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)
