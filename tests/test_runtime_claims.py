"""Outbox claims (both databases): a chat is claimed only as a run from its oldest pending row,
a held row is nobody else's until its lease expires, settlements mark rows in one batch; and
two reply senders (two runtimes, as two workers) on one PostgreSQL database send every reply
exactly once, each chat in order."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import App
from bot.channels import Sent
from bot.delivery import OutboxClaims, OutboxSender
from bot.messages import OutboundMessage, RichText
from bot.router import Capabilities
from bot.runtime import Runtime
from storage.db import Database
from storage.models import OutboxMessage
from storage.repositories import Repos
from storage.repositories_runtime import Settlement
from tests.conftest import make_app
from tests.support.harness import FakeClock


class Wall:
    """A settable wall clock for leases."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def add_replies(
    db: Database, chats_texts: list[tuple[str, str]], platform: str = "fake"
) -> list[int]:
    now = datetime.now(UTC)
    with db.session() as session:
        return Repos(db, session).outbox.add_many(
            [
                {
                    "platform": platform,
                    "chat_id": chat,
                    "inbox_id": None,
                    "message": OutboundMessage(chat, RichText().p(text)).to_json(),
                    "created_at": now,
                }
                for chat, text in chats_texts
            ]
        )


def statuses(db: Database) -> dict[int, tuple[str, str | None]]:
    from sqlmodel import select

    with db.session() as session:
        rows = session.exec(select(OutboxMessage)).all()
        return {r.id: (r.status, r.claimed_by) for r in rows if r.id is not None}


@pytest.fixture
def db(db_url: str):
    database = Database(db_url)
    yield database
    database.dispose()


def test_a_chat_is_claimed_only_as_a_run_from_its_head(db) -> None:
    wall = Wall()
    ids = add_replies(db, [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")])
    one = OutboxClaims(db, worker="w1", lease=30, clock=wall)
    two = OutboxClaims(db, worker="w2", lease=30, clock=wall)
    # w1 can take only 2 rows: a1 and b1, the heads.
    assert [c.outbox_id for c in one.claim("fake", limit=2)] == ids[:2]
    # w2 finds a2, a3, b2 free, but both chats' heads are w1's: it takes nothing (order).
    assert two.claim("fake", limit=10) == []
    # w1 goes on with its chats' runs.
    assert [c.outbox_id for c in one.claim("fake", limit=10)] == ids[2:]
    assert one.claim("fake") == []  # nothing new: held rows are not returned twice


def test_a_lease_expires_and_another_worker_takes_the_rows_in_order(db) -> None:
    wall = Wall()
    ids = add_replies(db, [("a", "a1"), ("a", "a2"), ("b", "b1")])
    dead = OutboxClaims(db, worker="dead", lease=30, clock=wall)
    alive = OutboxClaims(db, worker="alive", lease=30, clock=wall)
    assert len(dead.claim("fake")) == 3
    wall.now += timedelta(seconds=29)
    assert alive.claim("fake") == []
    wall.now += timedelta(seconds=2)  # the lease is over
    taken = alive.claim("fake")
    assert [c.outbox_id for c in taken] == ids
    assert [c.key for c in taken] == [f"out-{i}" for i in ids]
    assert {s[1] for s in statuses(db).values()} == {"alive"}


def test_renew_keeps_the_rows_and_release_gives_them_back(db) -> None:
    wall = Wall()
    add_replies(db, [("a", "a1"), ("b", "b1")])
    one = OutboxClaims(db, worker="w1", lease=30, clock=wall)
    two = OutboxClaims(db, worker="w2", lease=30, clock=wall)
    held = [c.outbox_id for c in one.claim("fake")]
    wall.now += timedelta(seconds=20)
    assert one.renew("fake", held) == 2
    wall.now += timedelta(seconds=20)  # 40 s after the claim, 20 after the renewal
    assert two.claim("fake") == []
    assert one.release("fake") == 2
    assert len(two.claim("fake")) == 2


def test_settle_marks_sent_and_dead_letters_and_unreachable_citizens(db_url, clock) -> None:
    app = make_app(db_url, clock)
    try:
        from tests.support.harness import Chat

        Chat(app.engine, user="alice", language="en").send("/start")
        db = app.db
        with db.session() as session:
            pending = Repos(db, session).outbox.pending("console", 100)
            Repos(db, session).outbox.mark_many(
                [(r.id, None) for r in pending if r.id], "sent", clock()
            )
        ids = add_replies(db, [("alice", "one"), ("alice", "two")], platform="console")
        claims = OutboxClaims(db, worker="w1")
        assert len(claims.claim("console")) == 2
        claims.settle(
            "console",
            [
                Settlement(ids[0], "sent", message_id="m1"),
                Settlement(ids[1], "failed", error="blocked"),
            ],
            ["alice"],
        )
        rows = statuses(db)
        assert rows[ids[0]][0] == "sent" and rows[ids[1]][0] == "failed"
        assert claims.counts("console")["failed"] == 1
        with db.session() as session:
            citizen = Repos(db, session).citizens.by_platform_id("console", "alice")
            assert citizen is not None and citizen.reachable is False
    finally:
        app.close()


class SlowChannel:
    """Records every send (key, chat, text); a little latency so both workers overlap."""

    platform = "fake"
    capabilities = Capabilities()

    def __init__(self, log: list[tuple[str, str, str]]) -> None:
        self.log = log

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        await asyncio.sleep(0.002)
        self.log.append((key, message.chat_id, message.text.blocks[0].spans[0].text))  # type: ignore[attr-defined]
        return Sent(key)


@pytest.mark.postgres
async def test_two_workers_on_postgresql_send_every_reply_exactly_once_in_order(pg_url) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    apps: list[App] = [
        make_app(pg_url, clock) if n == 0 else _attach(pg_url, clock) for n in range(2)
    ]
    runtimes = [Runtime(app) for app in apps]
    log: list[tuple[str, str, str]] = []
    try:
        n_chats, per_chat = 40, 15
        rows = [(f"c{c}", f"{c}:{n}") for n in range(per_chat) for c in range(n_chats)]
        stop = asyncio.Event()
        senders = [
            OutboxSender(rt, SlowChannel(log), batch=25, per_chat=4)  # type: ignore[arg-type]
            for rt in runtimes
        ]
        for sender in senders:
            sender.pacer.rate = 1e6
            sender.pacer.interval = 1e-6
        tasks = [asyncio.create_task(s.run(stop, idle=0.05)) for s in senders]
        # Replies arrive while both workers run.
        for start in range(0, len(rows), 50):
            add_replies(apps[0].db, rows[start : start + 50])
            await asyncio.sleep(0.01)
        for _ in range(600):
            if len(log) >= len(rows) and all(not s.held for s in senders):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for rt in runtimes:
            rt.close()
        for app in apps:
            app.close()
    sent = Counter(key for key, _c, _t in log)
    assert len(sent) == len(rows) and set(sent.values()) == {1}, sent.most_common(3)
    for c in range(n_chats):
        assert [t for _k, chat, t in log if chat == f"c{c}"] == [
            f"{c}:{n}" for n in range(per_chat)
        ]
    # Both workers did part of the work.
    assert all(s.sent > 0 for s in senders), [s.sent for s in senders]
    assert sum(s.sent for s in senders) == len(rows)
    db = Database(pg_url)
    try:
        assert {status for status, _w in statuses(db).values()} == {"sent"}
    finally:
        db.dispose()


def _attach(url: str, clock: FakeClock) -> App:
    """A second app (another worker) on the same database, without importing the seed again."""
    from bot.app import build_app
    from bot.settings import Settings

    return build_app(Settings(database_url=url), clock=clock)  # type: ignore[arg-type]


def test_take_over_clears_every_lease_for_a_restarted_single_worker(db) -> None:
    wall = Wall()
    ids = add_replies(db, [("a", "a1"), ("b", "b1")])
    killed = OutboxClaims(db, worker="killed", lease=30, clock=wall)
    restarted = OutboxClaims(db, worker="restarted", lease=30, clock=wall)
    assert len(killed.claim("fake")) == 2
    assert restarted.claim("fake") == []
    assert restarted.take_over("fake") == 2
    assert [c.outbox_id for c in restarted.claim("fake")] == ids


class HungChannel:
    """A worker whose sends never come back (its process froze, then died)."""

    platform = "fake"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_dead_workers_rows_are_sent_by_another_after_its_lease(db_url, clock) -> None:
    apps = [make_app(db_url, clock), _attach(db_url, clock)]
    runtimes = [Runtime(app, workers=1) for app in apps]
    log: list[tuple[str, str, str]] = []
    try:
        rows = [(f"c{n % 3}", f"{n % 3}:{n // 3}") for n in range(12)]
        add_replies(apps[0].db, rows)
        hung = HungChannel()
        dead = OutboxSender(runtimes[0], hung, lease=0.5)  # type: ignore[arg-type]
        # It claims and starts sending, then never renews nor settles anything (it died).
        assert await dead.claim() == 12
        for _ in range(100):
            if hung.calls >= 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert hung.calls == 3  # one in flight per chat, stuck
        alive = OutboxSender(runtimes[1], SlowChannel(log), lease=0.5)  # type: ignore[arg-type]
        alive.take_over = False  # several workers: no take-over, the leases must expire
        assert await alive.claim() == 0  # the dead worker's lease still holds
        stop = asyncio.Event()
        task = asyncio.create_task(alive.run(stop, idle=0.1))
        for _ in range(200):
            if len(log) >= 12:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await dead.lanes.stop(grace=0)
    finally:
        for rt in runtimes:
            rt.close()
        for app in apps:
            app.close()
    for c in range(3):
        assert [t for _k, chat, t in log if chat == f"c{c}"] == [f"{c}:{n}" for n in range(4)]
    assert len(log) == 12
