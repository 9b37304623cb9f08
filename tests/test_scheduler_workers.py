"""The scheduler service for real: APScheduler timers on the real clock, the misfire policy,
timers rebuilt after a change, leader election on PostgreSQL, and two worker processes whose
leader is killed mid-schedule (each action runs exactly once, the other takes over)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.runtime import Runtime
from bot.schedule import Kind, Lifecycle
from scheduler.leader import PostgresLeader
from scheduler.service import SchedulerService
from storage.db import utcnow
from storage.models_scheduler import ActionRun, Broadcast, BroadcastDelivery, ScheduledAction
from storage.repositories import Repos
from tests.support.scheduling import (
    FAST,
    RecordingChannel,
    add_subscribers,
    consultation_doc,
    read_lines,
    scheduler_app,
)

ROOT = Path(__file__).resolve().parent.parent
# Open now (by the real clock) and for a long time.
DOC = consultation_doc(opens_at="2020-01-06T10:00:00", closes_at="2099-01-05T10:00:00")


def schedule(app, kind: Kind, due, text: str = "") -> int:  # type: ignore[no-untyped-def]
    with app.db.session() as session:
        lifecycle = Lifecycle(Repos(app.db, session), utcnow())
        info = lifecycle.info(1)
        lifecycle.sync(info)
        params = {"texts": {"fr": text}} if kind == Kind.ANNOUNCE else {"rule": "manual"}
        row = lifecycle.schedule(info, kind, due, params, None)
        assert row.id is not None
        return row.id


async def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_real_apscheduler_runs_on_time_applies_the_misfire_policy_and_follows_changes(
    sqlite_url,
):
    app = scheduler_app(sqlite_url, utcnow, DOC)
    add_subscribers(app, 1, 3)
    now = utcnow()
    stale = schedule(app, Kind.REMINDER, now - timedelta(hours=2))  # past its hour of grace
    recent = schedule(app, Kind.REMINDER, now - timedelta(minutes=10))  # within it
    soon = schedule(app, Kind.ANNOUNCE, now + timedelta(seconds=1.5), "Dans une seconde")
    later = schedule(app, Kind.ANNOUNCE, now + timedelta(hours=1), "Plus tard")
    channel = RecordingChannel()
    runtime = Runtime(app)
    service = SchedulerService(
        app, runtime, {"console": channel}, poll_interval=0.2, paces={"console": FAST}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await wait_for(service.is_leader.is_set, 10, "leadership")
        jobs = {job.id: job for job in service._aps.get_jobs()}  # type: ignore[union-attr]
        assert jobs[str(later)].misfire_grace_time is None  # announcements: always
        await wait_for(lambda: any(o.action_id == soon for o in service.outcomes), 10, "soon")
        started = time.monotonic()
        done = {o.action_id: o for o in service.outcomes}
        assert done[stale].outcome == "skipped" and "missed by 2h" in (done[stale].note or "")
        assert done[recent].outcome == "done"
        assert abs(done[soon].due_at - now - timedelta(seconds=1.5)) < timedelta(seconds=0.01)
        await wait_for(lambda: len(channel.to("citizen0")) >= 3, 10, "sends")
        # A moderator moves the later announcement to now: the timers follow.
        with app.db.session() as session:
            session.execute(
                update(ScheduledAction)
                .where(ScheduledAction.id == later)  # type: ignore[arg-type]
                .values(due_at=utcnow() + timedelta(seconds=0.5), updated_at=utcnow())
            )
        await wait_for(lambda: any(o.action_id == later for o in service.outcomes), 10, "later")
        assert time.monotonic() - started < 5
        await wait_for(lambda: "Plus tard" in channel.to("citizen2")[-1].text, 10, "its sends")
    finally:
        stop.set()
        await task
        runtime.close()
    texts = [r.text for r in channel.to("citizen1")]
    # The opening (run at start, late but always), the recent reminder, both announcements.
    assert len(texts) == 4 and texts[0].startswith("🟢") and texts[1].startswith("⏰")
    with app.db.session() as session:
        runs = Counter(r.outcome for r in session.exec(select(ActionRun)).all())
    assert runs == {"done": 4, "skipped": 1}
    app.close()


async def test_the_leader_erases_citizens_silent_past_the_retention_period(sqlite_url):
    from storage.models import Citizen
    from tests.support.harness import Chat

    app = scheduler_app(sqlite_url, utcnow, DOC)
    Chat(app.engine, user="silent").send("/start")
    Chat(app.engine, user="active").send("/start")
    with app.db.session() as session:  # "silent" last wrote 13 months ago
        session.execute(
            update(Citizen)
            .where(Citizen.platform_user_id == "silent")  # type: ignore[arg-type]
            .values(last_seen_at=utcnow() - timedelta(days=400))
        )
    runtime = Runtime(app)
    service = SchedulerService(app, runtime, {}, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    def ids() -> set[str | None]:
        with app.db.session() as session:
            return {c.platform_user_id for c in session.exec(select(Citizen)).all()}

    try:
        await wait_for(lambda: "silent" not in ids(), 10, "the erasure")
        assert "active" in ids()
    finally:
        stop.set()
        await task
        runtime.close()
    app.close()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
async def test_advisory_lock_leadership(pg_url):
    import psycopg

    a, b = PostgresLeader(pg_url), PostgresLeader(pg_url)
    try:
        assert await a.acquire()
        assert not await b.acquire()
        assert await a.check() and not await b.check()
        # The leader's session dies (a crash, a network cut): it knows, and b takes over.
        with psycopg.connect(
            pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True
        ) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'parlons-scheduler' AND pid <> pg_backend_pid() "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            )
        assert not await a.check()
        assert await b.acquire() and await b.check()
        assert not await a.acquire()
    finally:
        await a.release()
        await b.release()


def _worker(db: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.scheduler_worker", "--db", db, "--out", str(out),
         "--delay", "0.02", "--poll", "0.2", "--log", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_workers_the_leader_killed_mid_schedule_each_action_once(pg_url, tmp_path):
    app = scheduler_app(pg_url, utcnow, DOC)
    users = add_subscribers(app, 1, 40)
    now = utcnow()
    actions = [
        schedule(app, Kind.ANNOUNCE, now + timedelta(seconds=3 + 1.5 * i), f"Annonce {i}")
        for i in range(5)
    ]
    out = tmp_path / "sent.jsonl"
    workers = [_worker(pg_url, out), _worker(pg_url, out)]
    try:
        # Wait until the leader is in the middle of the second announcement, then kill it.
        def second_started() -> bool:
            return sum("Annonce 1" in line["text"] for line in read_lines(out)) >= 10

        await wait_for(second_started, 30, "the second announcement")
        leader_pid = read_lines(out)[-1]["pid"]
        leader = next(w for w in workers if w.pid == leader_pid)
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed_at = time.time()

        def finished() -> bool:
            with app.db.session() as session:
                rows = session.exec(select(Broadcast)).all()
                return len(rows) == 6 and all(b.status == "done" for b in rows)

        await wait_for(finished, 60, "every action and broadcast")
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(10)
    with app.db.session() as session:
        runs = session.exec(select(ActionRun)).all()
        deliveries = session.exec(select(BroadcastDelivery)).all()
    # Exactly once: the opening and the five announcements, one run each, one broadcast each.
    assert sorted(r.action for r in runs) == sorted(
        ["1:open", *(f"1:{a.key}" for a in _keys(app, actions))]
    )
    assert Counter(d.status for d in deliveries) == {"sent": 6 * 40}
    lines = read_lines(out)
    per_key = Counter(line["key"] for line in lines)
    assert set(per_key) == {f"bc-{d.id}-0" for d in deliveries}
    # At most the one message in flight when the leader died went twice.
    assert sum(n - 1 for n in per_key.values()) <= 1
    for i in range(5):
        assert {line["chat"] for line in lines if f"Annonce {i}" in line["text"]} == set(users)
    # The other worker took over within seconds.
    survivor = [line for line in lines if line["pid"] != leader_pid]
    assert survivor and min(line["at"] for line in survivor) - killed_at < 5
    assert len({line["pid"] for line in lines}) == 2
    app.close()


def _keys(app, ids):  # type: ignore[no-untyped-def]
    with app.db.session() as session:
        return [session.get(ScheduledAction, i) for i in ids]
