"""Leadership when several workers share a database: who runs the schedule, who polls a bot
account (one ``getUpdates`` consumer per Telegram token, one sync per Matrix account).

PostgreSQL: a session advisory lock held on a dedicated connection (autocommit, TCP
keepalives). The lock lives exactly as long as that connection: when the leader process dies,
the server closes its session and frees the lock, and another worker takes it on its next try
(every ``retry`` seconds). Do not route this connection through a transaction-pooling pgbouncer.

SQLite (one writer process by design): an exclusive ``flock`` on a file next to the database, so
two ``parlons run`` on the same file still run the schedule once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# "parlons" in ASCII: the advisory lock key of the scheduler.
LOCK_KEY = 0x7061726C6F6E73


def lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a named role (``"poll:telegram:123"``)."""
    if name == "scheduler":
        return LOCK_KEY
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Leadership(Protocol):
    async def acquire(self) -> bool:
        """Try once to become the leader."""
        ...

    async def check(self) -> bool:
        """Still the leader?"""
        ...

    async def release(self) -> None: ...


class PostgresLeader:
    def __init__(
        self,
        url: str,
        *,
        key: int = LOCK_KEY,
        timeout: float = 5.0,
        application_name: str = "parlons-scheduler",
    ) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.dsn = parsed.render_as_string(hide_password=False)
        self.key = key
        self.timeout = timeout
        self.application_name = application_name
        self.conn: object | None = None

    async def _connect(self) -> object:
        import psycopg

        return await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            application_name=self.application_name,
            connect_timeout=max(1, int(self.timeout)),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    async def acquire(self) -> bool:
        try:
            if self.conn is None:
                self.conn = await self._connect()
            cur = await asyncio.wait_for(
                self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)),  # type: ignore[attr-defined]
                self.timeout,
            )
            row = await cur.fetchone()
            return bool(row and row[0])
        except Exception as exc:
            log.warning("leader election: %s", exc)
            await self._drop()
            return False

    async def check(self) -> bool:
        if self.conn is None:
            return False
        try:
            cur = await asyncio.wait_for(
                self.conn.execute(  # type: ignore[attr-defined]
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
                    (self.key >> 32, self.key & 0xFFFFFFFF),
                ),
                self.timeout,
            )
            row = await cur.fetchone()
            return bool(row and row[0])
        except Exception as exc:
            log.warning("leader lost its database session: %s", exc)
            await self._drop()
            return False

    async def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))  # type: ignore[attr-defined]
        await self._drop()

    async def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # type: ignore[attr-defined]


class FileLeader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    async def acquire(self) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    async def check(self) -> bool:
        return self.handle is not None

    async def release(self) -> None:
        if self.handle is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


class AlwaysLeader:
    """In-memory databases (one process by construction)."""

    async def acquire(self) -> bool:
        return True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None


def leadership_for(url: str, name: str = "scheduler") -> Leadership:
    """The leadership of a named role on this database (``"scheduler"``, or
    ``"poll:<platform>:<account>"`` for a bot account's poller)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return AlwaysLeader()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
        return FileLeader(Path(f"{parsed.database}.{safe}.lock"))
    tag = "scheduler" if name == "scheduler" else name.split(":", 1)[0]
    return PostgresLeader(url, key=lock_key(name), application_name=f"parlons-{tag}")
