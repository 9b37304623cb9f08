"""Several workers on one PostgreSQL database: every worker processes the inbox, each event
exactly once and in order within its chat; one poller per bot account (a leader per account,
with failover); SQLite refuses a second worker."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from itertools import count

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from bot.app import build_app
from bot.messages import ChatType, CommandMessage, EventContext, InboundEvent, TextMessage
from bot.settings import Settings
from bot.workers import Leader, SecondWorker, single_worker_lock
from storage.models import InboxEvent, OutboxMessage, Support
from storage.repositories import Repos
from tests.conftest import SEED

_ids = count(1)


def _event(chat: str, payload: object) -> InboundEvent:
    return InboundEvent(
        EventContext(
            platform="test",
            chat_id=chat,
            user_id=chat,
            event_id=f"w{next(_ids)}",
            language="fr",
            chat_type=ChatType.PRIVATE,
        ),
        payload,  # type: ignore[arg-type]
    )


def _command(text: str) -> CommandMessage:
    name, *args = text[1:].split()
    return CommandMessage(name, tuple(args), " ".join(args))


def _app(url: str, clock):  # type: ignore[no-untyped-def]
    return build_app(Settings(database_url=url, log_level="WARNING"), clock=clock)


@pytest.mark.postgres
def test_two_workers_process_each_event_once_in_chat_order(pg_url, clock):
    """Two engines on their own connection pools (as two processes) drain one inbox at the
    same time, in small batches: every event is applied once (supports counted once, one
    reply per event), and within each chat the replies are stored in the order the events
    came (so a chat's lane sends them in that order)."""
    first = _app(pg_url, clock)
    first.import_consultation(SEED)
    chats = [f"c{n}" for n in range(12)]
    # Everyone accepts the privacy notice and contributes one idea (processed up front).
    setup = ["/start", "/accept", "/participate"]
    for text in setup:
        first.engine.handle_many([_event(chat, _command(text)) for chat in chats])
    first.engine.handle_many(
        [_event(chat, TextMessage(f"Idée de {chat}, assez longue.")) for chat in chats]
    )
    first.engine.handle_many([_event(chat, _command("/confirm")) for chat in chats])
    with first.db.session() as s:
        before_outbox = s.exec(select(func.max(OutboxMessage.id))).one() or 0
        before_inbox = s.exec(select(func.max(InboxEvent.id))).one() or 0
    # Then a burst: each chat supports every other chat's idea (ids 1..12), with a /stats and
    # a text in between, all pending in the inbox.
    burst: list[InboundEvent] = []
    for round_ in range(12):
        for n, chat in enumerate(chats):
            target = (n + round_) % len(chats) + 1
            if target != n + 1:
                burst.append(_event(chat, _command(f"/support {target}")))
            burst.append(_event(chat, _command("/stats") if round_ % 2 else TextMessage("?")))
    first.engine.ingest_many(burst)

    second = _app(pg_url, clock)
    errors: list[BaseException] = []
    taken: dict[str, int] = defaultdict(int)

    def worker(name: str, app) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                ids = app.engine.pending("test", 7)
                if not ids:
                    return
                taken[name] += len(app.engine.process_many(ids))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(name, app))
        for name, app in (("a", first), ("b", second), ("c", second))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(1 for v in taken.values() if v) >= 2, taken  # the work was shared

    with first.db.session() as s:
        statuses = s.exec(
            select(InboxEvent.status, func.count())
            .where(col(InboxEvent.id) > before_inbox)
            .group_by(InboxEvent.status)
        ).all()
        assert dict(statuses) == {"done": len(burst)}
        supports = s.exec(select(func.count()).select_from(Support)).one()
        assert supports == len(chats) * (len(chats) - 1)
        rows = s.exec(
            select(OutboxMessage.chat_id, OutboxMessage.inbox_id)
            .where(col(OutboxMessage.id) > before_outbox)
            .order_by(col(OutboxMessage.id))
        ).all()
    # One reply per event (none doubled, none lost)…
    assert sorted(i for _c, i in rows) == sorted(set(i for _c, i in rows))
    assert len(rows) == len(burst)
    # …and, within each chat, stored in the order of the events.
    per_chat: dict[str, list[int]] = defaultdict(list)
    for chat, inbox_id in rows:
        per_chat[chat].append(inbox_id)
    for chat, inbox_ids in per_chat.items():
        assert inbox_ids == sorted(inbox_ids), chat
    first.close()
    second.close()


@pytest.mark.postgres
def test_a_chat_busy_on_one_worker_is_skipped_by_the_others(pg_url, clock):
    """While one worker processes a chat's first event (its transaction still open), another
    worker skips that chat's next event (it stays pending, to be processed after) but
    processes another chat's event meanwhile."""
    first = _app(pg_url, clock)
    first.import_consultation(SEED)
    first.engine.ingest_many(
        [
            _event("busy", _command("/start")),
            _event("busy", _command("/help")),
            _event("other", _command("/start")),
        ]
    )
    row1, row2, row3 = first.engine.pending("test")
    second = _app(pg_url, clock)
    holding, release = threading.Event(), threading.Event()

    def hold_first_event() -> None:
        with first.db.session() as s:
            assert Repos(first.db, s).inbox.take(row1, clock(), [])[1] is not None
            holding.set()
            release.wait(30)
            s.rollback()  # as if that worker died: the event is pending again

    t = threading.Thread(target=hold_first_event)
    t.start()
    try:
        assert holding.wait(30)
        assert second.engine.process_many([row2]) == []  # its chat is busy: skipped
        assert second.engine.process_many([row1]) == []  # taken by the other worker
        assert len(second.engine.process_many([row3])) >= 1  # another chat: processed
    finally:
        release.set()
        t.join()
    # The busy chat is free again: its events are processed, the first one first.
    assert len(second.engine.process_many([row1, row2])) >= 2
    with second.db.session() as s:
        answered = s.exec(select(OutboxMessage.inbox_id).order_by(col(OutboxMessage.id))).all()
        pending = s.exec(select(func.count()).where(InboxEvent.status == "pending")).one()
    assert list(dict.fromkeys(answered)) == [row3, row1, row2]
    assert pending == 0
    first.close()
    second.close()


def test_sqlite_processing_takes_each_event_once(sqlite_url, clock):
    app = _app(sqlite_url, clock)
    app.import_consultation(SEED)
    app.engine.ingest_many([_event("solo", _command("/start"))])
    (inbox_id,) = app.engine.pending("test")
    assert len(app.engine.process_many([inbox_id])) >= 1
    assert app.engine.process_many([inbox_id]) == []  # done: never again
    app.close()


# --------------------------------------------------------------------------- one poller


@pytest.mark.postgres
async def test_one_poller_per_account_and_failover_within_seconds(pg_url):
    """Three workers compete for one Telegram account's poller and one for another account:
    one leader per account at any moment; when the leader's database session dies (as when
    its process is killed), another worker polls within seconds."""
    import psycopg

    polling: dict[str, int] = defaultdict(int)
    overlap: list[str] = []

    def poller(account: str, worker: str):  # type: ignore[no-untyped-def]
        async def work(halt: asyncio.Event) -> None:
            polling[account] += 1
            if polling[account] > 1:
                overlap.append(worker)
            try:
                await halt.wait()
            finally:
                polling[account] -= 1

        return work

    leaders = [
        Leader.for_account(pg_url, "telegram", "111", retry=0.2, check=0.2) for _ in range(3)
    ]
    other = Leader.for_account(pg_url, "telegram", "222", retry=0.2, check=0.2)
    stop = asyncio.Event()
    tasks = [
        asyncio.ensure_future(leader.run(stop, poller("111", f"w{i}")))
        for i, leader in enumerate(leaders)
    ] + [asyncio.ensure_future(other.run(stop, poller("222", "x")))]
    try:
        await _until(lambda: polling["111"] == 1 and polling["222"] == 1, 10)
        first = next(leader for leader in leaders if leader.leading)
        assert sum(leader.leading for leader in leaders) == 1 and other.leading
        # The leader's session dies.
        conn = first.leadership.conn  # type: ignore[attr-defined]
        pid = conn.info.backend_pid
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        started = asyncio.get_running_loop().time()
        await _until(lambda: any(leader.leading for leader in leaders if leader is not first), 10)
        assert asyncio.get_running_loop().time() - started < 10
        await _until(lambda: not first.leading, 10)
        assert polling["111"] == 1 and other.leading
        assert not overlap, overlap
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert polling == {"111": 0, "222": 0}


async def _until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_sqlite_refuses_a_second_worker(sqlite_url, tmp_path):
    """A second `parlons run` on the same SQLite file stops at once with a clear message."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    held = single_worker_lock(sqlite_url)
    assert held is not None
    with pytest.raises(SecondWorker):
        single_worker_lock(sqlite_url)
    config = tmp_path / "parlons.toml"
    config.write_text("")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PARLONS_")}
    env.update(
        PARLONS_DATABASE_URL=sqlite_url,
        PARLONS_TELEGRAM_TOKEN="123:abc",
        PARLONS_TELEGRAM_API_URL="http://127.0.0.1:9/bot",
        PARLONS_CONFIG_FILE=str(config),
        PARLONS_LOG_LEVEL="WARNING",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "--no-scheduler"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "another 'parlons run' already uses the SQLite database" in result.stderr
    assert "use PostgreSQL" in result.stderr
    asyncio.run(held.release())
    # Free again: the lock can be taken.
    again = single_worker_lock(sqlite_url)
    assert again is not None
    asyncio.run(again.release())
