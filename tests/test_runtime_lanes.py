"""The delivery runtime's lanes and pacing, on a fake clock with fake channels: order within a
chat, chats in parallel, retries held on their lane with a capped backoff, dead letters, the
account's pace (sliding one-second windows), replies before broadcasts, and the pace shared
through the database by two pacers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.channels import PermanentFailure, RetryAfter, Sent, TemporaryFailure, Unreachable
from bot.delivery import (
    BROADCAST,
    REPLY,
    AccountPacer,
    Backoff,
    DatabaseSlots,
    Job,
    Lanes,
    MemorySlots,
    Outcome,
    PriorityGate,
    pace_extra_part,
)
from bot.messages import OutboundMessage, RichText
from bot.router import Capabilities
from storage.db import Database
from tests.support.fake_time import FakeTime


class FakeChannel:
    platform = "fake"
    capabilities = Capabilities()

    def __init__(self, time: FakeTime, latency: float = 0.0, parts: int = 1) -> None:
        self.time, self.latency, self.parts = time, latency, parts
        self.sent: list[tuple[float, str, str]] = []  # (time, chat, text) of each API send
        self.attempts: list[tuple[float, str]] = []  # (time, key)
        self.failures: dict[str, list[Exception]] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        self.attempts.append((self.time.now, key))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for part in range(self.parts):
                if part:
                    await pace_extra_part()
                if self.latency:
                    await self.time.sleep(self.latency)
                plan = self.failures.get(key)
                if plan:
                    raise plan.pop(0)
                self.sent.append((self.time.now, message.chat_id, _text(message)))
        finally:
            self.in_flight -= 1
        return Sent(key)

    def texts(self, chat: str) -> list[str]:
        return [text for _t, c, text in self.sent if c == chat]


def _text(message: OutboundMessage) -> str:
    return message.text.blocks[0].spans[0].text  # type: ignore[attr-defined]


def message(chat: str, text: str) -> OutboundMessage:
    return OutboundMessage(chat_id=chat, text=RichText().p(text))


def max_window(stamps: list[float], width: float = 1.0) -> int:
    """The most sends in any half-open window [t, t + width)."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


class World:
    def __init__(
        self,
        *,
        rate: float = 1000.0,
        latency: float = 0.0,
        concurrency: int = 16,
        reserve: int = 4,
        chat_interval: float = 0.0,
        group_interval: float = 0.0,
        backoff: Backoff | None = None,
        parts: int = 1,
    ) -> None:
        self.time = FakeTime()
        self.channel = FakeChannel(self.time, latency, parts)
        self.pacer = AccountPacer(rate, MemorySlots(), clock=self.time, sleep=self.time.sleep)
        self.gate = PriorityGate(concurrency, reserve=reserve)
        self.lanes = Lanes(
            self.channel,  # type: ignore[arg-type]
            self.pacer,
            self.gate,
            chat_interval=chat_interval,
            group_interval=group_interval,
            backoff=backoff or Backoff(0.5, 30.0),
            clock=self.time,
            sleep=self.time.sleep,
        )
        self.outcomes: dict[str, Outcome] = {}
        self.done_at: dict[str, float] = {}
        self._keys = itertools.count(1)

    def _done(self, job: Job, outcome: Outcome) -> None:
        self.outcomes[job.key] = outcome
        self.done_at[job.key] = self.time.now

    def submit(self, chat: str, text: str, *, priority: int = REPLY, group: bool = False) -> str:
        key = f"k{next(self._keys)}"
        self.lanes.submit(Job(chat, message(chat, text), key, self._done, priority, group))
        return key

    def run(self, limit: float = 1e5) -> Any:
        return self.time.run(self.lanes.drain(), limit=limit)


async def test_order_is_kept_per_chat_and_chats_go_in_parallel() -> None:
    w = World(latency=0.1)
    for n in range(5):
        for chat in ("a", "b", "c"):
            w.submit(chat, f"{chat}{n}")
    start = w.time.now
    await w.run()
    for chat in ("a", "b", "c"):
        assert w.channel.texts(chat) == [f"{chat}{n}" for n in range(5)]
    # One in flight per chat, three chats at once: 5 rounds of 0.1 s, not 15.
    assert w.channel.max_in_flight == 3
    assert w.time.now - start == pytest.approx(0.5, abs=0.02)


async def test_concurrency_is_bounded_by_the_gate() -> None:
    w = World(latency=0.5, concurrency=4, reserve=0)
    for chat in range(20):
        w.submit(f"c{chat}", "hello")
    await w.run()
    assert len(w.channel.sent) == 20
    assert w.channel.max_in_flight == 4


async def test_a_transient_failure_holds_only_its_chat_with_capped_backoff() -> None:
    w = World(latency=0.01, backoff=Backoff(0.5, 5.0))
    first = w.submit("a", "a1")
    w.channel.failures[first] = [TemporaryFailure("502 Bad Gateway") for _ in range(6)]
    w.submit("a", "a2")
    w.submit("a", "a3")
    for n in range(3):
        w.submit("b", f"b{n}")
    await w.run()
    # Never reordered, never skipped: a1 first, once it finally went through.
    assert w.channel.texts("a") == ["a1", "a2", "a3"]
    tries = [t for t, key in w.channel.attempts if key == first]
    gaps = [round(b - a - 0.01, 3) for a, b in itertools.pairwise(tries)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]  # exponential, capped at 5 s
    # The other chat did not wait for a's retries.
    b_done = max(t for t, chat, _x in w.channel.sent if chat == "b")
    assert b_done < tries[1]
    assert w.outcomes[first].status == "sent" and w.outcomes[first].attempts == 7


async def test_retry_after_waits_what_the_platform_asks_on_that_lane_only() -> None:
    w = World()
    key = w.submit("a", "a1")
    w.channel.failures[key] = [RetryAfter(3.0)]
    w.submit("a", "a2")
    start = w.time.now
    other = w.submit("b", "b1")
    await w.run()
    assert w.channel.texts("a") == ["a1", "a2"]
    assert w.done_at[key] - start == pytest.approx(3.0, abs=0.01)
    assert w.done_at[other] - start < 0.01
    assert w.lanes.stats.throttled == 1


async def test_a_permanent_failure_is_a_dead_letter_and_the_lane_goes_on() -> None:
    w = World()
    bad = w.submit("a", "a1")
    w.channel.failures[bad] = [PermanentFailure("Bad Request: can't parse entities")]
    w.submit("a", "a2")
    gone = w.submit("x", "x1")
    w.channel.failures[gone] = [Unreachable("Forbidden: bot was blocked by the user")]
    await w.run()
    assert w.channel.texts("a") == ["a2"]
    assert w.outcomes[bad].status == "failed" and "parse" in (w.outcomes[bad].error or "")
    assert w.outcomes[gone].status == "unreachable"
    assert w.lanes.stats.dead == 2 and w.lanes.stats.unreachable == 1
    # Tried once each: a permanent error is not retried.
    assert [k for _t, k in w.channel.attempts].count(bad) == 1


@pytest.mark.parametrize("latency", [0.0, 0.05, 0.1])
async def test_no_one_second_window_above_the_rate_and_the_rate_is_reached(latency) -> None:
    w = World(rate=25.0, latency=latency)
    for n in range(300):
        w.submit(f"c{n % 60}", f"m{n}")
    await w.run()
    stamps = [t for t, _c, _x in w.channel.sent]
    assert len(stamps) == 300
    assert max_window(stamps) <= 25
    achieved = (len(stamps) - 1) / (max(stamps) - min(stamps))
    assert achieved >= 0.9 * 25, achieved


async def test_split_messages_take_a_slot_per_part() -> None:
    w = World(rate=10.0, parts=3)
    for n in range(10):
        w.submit(f"c{n}", "long")
    await w.run()
    stamps = [t for t, _c, _x in w.channel.sent]
    assert len(stamps) == 30
    assert max_window(stamps) <= 10


async def test_per_chat_spacing_with_a_short_burst() -> None:
    w = World(chat_interval=1.0, group_interval=3.0)
    w.lanes.chat_burst, w.lanes.group_burst = 3.0, 1.0
    for n in range(6):
        w.submit("p", f"p{n}")
        w.submit("-g", f"g{n}", group=True)
    await w.run()
    private = [t for t, c, _x in w.channel.sent if c == "p"]
    group = [t for t, c, _x in w.channel.sent if c == "-g"]
    assert max_window(private, 1.0) <= 3  # the burst, then one a second
    assert private[-1] - private[0] == pytest.approx(3.0, abs=0.05)
    assert all(b - a >= 3.0 - 1e-6 for a, b in itertools.pairwise(group))


async def test_replies_pass_queued_broadcasts() -> None:
    w = World(rate=10.0)
    start = w.time.now
    broadcast = [w.submit(f"sub{n}", f"news{n}", priority=BROADCAST) for n in range(40)]

    async def later() -> list[str]:
        await w.time.sleep(1.0)
        return [w.submit(f"citizen{n}", f"reply{n}") for n in range(5)]

    replies_task = asyncio.ensure_future(later())
    await w.run()
    replies = replies_task.result()
    last_reply = max(w.done_at[k] for k in replies)
    # The five replies took the next five slots (0.1 s apart at 10/s, with the headroom).
    assert last_reply - (start + 1.0) < 0.65
    assert sum(1 for k in broadcast if w.done_at[k] > last_reply) > 20


async def test_broadcasts_leave_the_reserve_to_replies() -> None:
    w = World(latency=1.0, concurrency=8, reserve=3)
    for n in range(30):
        w.submit(f"sub{n}", "news", priority=BROADCAST)
    await w.time._settle()
    assert w.gate.held == 5  # 8 places, 3 kept for replies
    reply = w.submit("citizen", "hi")
    await w.run()
    assert w.channel.max_in_flight == 6
    assert w.done_at[reply] == pytest.approx(1000.0 + 1.0, abs=0.01)


async def test_a_429_on_a_broadcast_pauses_broadcasts_but_not_replies() -> None:
    w = World(rate=100.0)
    first = w.submit("sub0", "news0", priority=BROADCAST)
    w.channel.failures[first] = [RetryAfter(2.0)]
    others = [w.submit(f"sub{n}", f"news{n}", priority=BROADCAST) for n in range(1, 5)]
    reply = w.submit("citizen", "hi")
    start = w.time.now
    await w.run()
    assert w.done_at[reply] - start < 0.1
    assert min(w.done_at[k] for k in others) - start >= 2.0


async def test_stop_leaves_queued_jobs_unsent_and_lets_the_one_in_flight_finish() -> None:
    w = World(latency=1.0, rate=1000.0)
    keys = [w.submit("a", f"a{n}") for n in range(5)]

    async def stop_soon() -> None:
        await w.time.sleep(0.5)
        await w.lanes.stop()

    await w.time.run(stop_soon())
    assert w.channel.texts("a") == ["a0"]
    assert set(w.outcomes) == {keys[0]}


def _direct(db: Database) -> Callable[..., Awaitable[Any]]:
    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    return call


async def test_two_pacers_share_the_accounts_pace_through_the_database(db_url) -> None:
    """Two workers' pacers on one ``send_pace`` row: together, no window above the rate."""
    db = Database(db_url)
    time = FakeTime()
    pacers = [
        AccountPacer(
            20.0,
            DatabaseSlots(db, "telegram", _direct(db)),
            batch=4,
            clock=time,
            sleep=time.sleep,
        )
        for _ in range(2)
    ]
    stamps: list[float] = []

    async def worker(pacer: AccountPacer) -> None:
        for _ in range(60):
            await pacer.acquire(REPLY)
            stamps.append(time.now)

    try:
        await time.run(asyncio.gather(*(worker(p) for p in pacers)))
    finally:
        db.dispose()
    assert len(stamps) == 120
    assert max_window(stamps) <= 20
    assert (len(stamps) - 1) / (max(stamps) - min(stamps)) >= 0.9 * 20


async def test_the_pacer_keeps_its_own_spacing_when_the_shared_slots_fail() -> None:
    class Down:
        async def take(self, span: float, now: float) -> float:
            raise ConnectionError("database unreachable")

    time = FakeTime()
    pacer = AccountPacer(10.0, Down(), clock=time, sleep=time.sleep)
    stamps: list[float] = []

    async def sends() -> None:
        for _ in range(30):
            await pacer.acquire(REPLY)
            stamps.append(time.now)

    await time.run(sends())
    assert len(stamps) == 30 and max_window(stamps) <= 10


def test_a_shared_pace_left_far_ahead_by_a_wrong_clock_is_not_trusted(db_url) -> None:
    from storage.repositories_runtime import RuntimeRepo

    db = Database(db_url)
    try:
        with db.session() as session:
            repo = RuntimeRepo(db, session)
            assert repo.take_slots("telegram", 0.2, 1000.0) == 1000.0
            assert repo.take_slots("telegram", 0.2, 1000.0) == pytest.approx(1000.2)
            assert repo.take_slots("telegram", 0.2, 1000.1) == pytest.approx(1000.4)
            # A worker an hour ahead took slots: the others do not wait an hour.
            assert repo.take_slots("telegram", 0.2, 4600.0) == 4600.0
            assert repo.take_slots("telegram", 0.2, 1000.5) == 1000.5
    finally:
        db.dispose()
