"""Housekeeping off the event path: expiry of silent citizens and retention pruning run in small
committed batches; other work goes on between them; a stop between two batches leaves a
consistent state that the next round finishes."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from sqlalchemy import func, select

from bot.messages import CommandMessage, EventContext, InboundEvent
from bot.privacy import NOTICE_VERSION, Housekeeping
from bot.runtime import Runtime
from scheduler.service import SchedulerService
from storage.models import Citizen, Contribution, InboxEvent, OutboxMessage, Support
from storage.models_moderation import PrivacyConsent
from tests.support.moderation import build, chats, contribute, count, rows

STALE = 400  # one transaction of several seconds for the old code (all in one)
BATCH = 25


def _add_stale_citizens(app, n: int) -> None:  # type: ignore[no-untyped-def]
    """Citizens who accepted the notice and wrote once, two years ago."""
    old = app.clock() - timedelta(days=730)
    with app.db.session() as s:
        citizens = [
            Citizen(
                platform="telegram",
                platform_user_id=str(500_000 + i),
                display_name=f"Stale {i}",
                pseudonym=secrets.token_hex(8),
                created_at=old,
                last_seen_at=old,
            )
            for i in range(n)
        ]
        s.add_all(citizens)
        s.flush()
        for c in citizens:
            assert c.id is not None and c.platform_user_id is not None
            s.add(PrivacyConsent(citizen_id=c.id, version=NOTICE_VERSION, accepted_at=old))
            s.add(
                InboxEvent(
                    platform="telegram",
                    event_key=f"msg:{c.platform_user_id}:1",
                    status="done",
                    event={"context": {}, "payload": {"kind": "text", "text": "hello"}},
                    received_at=old,
                    processed_at=old,
                    user_id=c.platform_user_id,
                    chat_id=c.platform_user_id,
                    chat_type="private",
                    kind="text",
                )
            )


def _state(app) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    """(erased stale citizens, untouched stale citizens, consents left of erased ones, inbox
    rows still naming an erased one) — the last two must stay 0 at any moment."""
    with app.db.session() as s:
        stale = list(
            s.execute(select(Citizen).where(Citizen.display_name.like("Stale %"))).scalars()  # type: ignore[union-attr]
        )
        tombs = list(
            s.execute(
                select(Citizen).where(
                    Citizen.platform_user_id.is_(None)  # type: ignore[union-attr]
                )
            ).scalars()
        )
        tomb_ids = [t.id for t in tombs]
        consents = s.execute(
            select(func.count())
            .select_from(PrivacyConsent)
            .where(PrivacyConsent.citizen_id.in_(tomb_ids))  # type: ignore[attr-defined]
        ).scalar_one()
        live_ids = {c.platform_user_id for c in stale}
        keys = [k for k in s.execute(select(InboxEvent.event_key)).scalars()]
        orphans = sum(1 for k in keys if k.startswith("msg:5") and k.split(":")[1] not in live_ids)
        return len(tombs), len(stale), int(consents), orphans


async def test_expiry_commits_small_batches_lets_other_work_through_and_resumes(
    sqlite_url, clock, tmp_path
):
    app = build(sqlite_url, clock, tmp_path, privacy_expiry_batch=BATCH)
    runtime = Runtime(app)
    try:
        chats(app)("active").send("/start")  # an active citizen, whose events keep coming
        _add_stale_citizens(app, STALE)
        clock.advance(days=1)
        service = SchedulerService(app, runtime, {})
        stop = asyncio.Event()
        seen: list[tuple[int, int, int, int]] = []
        answered = 0

        def active_event(n: int) -> InboundEvent:
            ctx = EventContext("console", "active", "active", f"active-{n}", language="en")
            return InboundEvent(ctx, CommandMessage("help"))

        async def other_work() -> None:
            nonlocal answered
            n = 0
            while not stop.is_set():
                n += 1
                # Another citizen's event, on the same database thread as the housekeeping.
                if await runtime.call(app.engine.handle, active_event(n)):
                    answered += 1
                seen.append(await runtime.call(_state, app))
                if seen[-1][0] >= STALE // 2:
                    stop.set()  # SIGTERM half-way

        worker = asyncio.create_task(other_work())
        report = await service.housekeep_async(stop)
        await worker

        # Stopped between two batches: not finished, some erased, all of them consistent.
        assert not report.finished
        assert STALE // 2 <= report.erased < STALE
        erased, untouched, consents, orphans = _state(app)
        assert (erased, untouched) == (report.erased, STALE - report.erased)
        assert (consents, orphans) == (0, 0)
        # Other transactions ran between batches and saw each batch committed on its own.
        progress = sorted({s[0] for s in seen if 0 < s[0] < STALE})
        assert len(progress) >= 3, seen
        assert all(s[2:] == (0, 0) for s in seen), seen
        assert answered == len(seen)

        # The next round finishes the job.
        report2 = await service.housekeep_async(asyncio.Event())
        assert report2.finished and report.erased + report2.erased == STALE
        assert _state(app) == (STALE, 0, 0, 0)
        assert count(app, Citizen, Citizen.platform_user_id == "active") == 1
    finally:
        runtime.close()
        app.close()


def test_retention_prunes_handled_rows_in_batches_and_keeps_what_is_needed(
    sqlite_url, clock, tmp_path
):
    # A retention of 2 days, so that the consultation is still open after it.
    app = build(
        sqlite_url, clock, tmp_path, privacy_batch_size=5, privacy_message_retention_days=2
    )
    try:
        chat = chats(app)
        author = chat("author")
        contribute(author, "Une idée à garder", None)
        bob = chat("bob")
        bob.send("/ideas 1")  # an idea card: its outbox row carries the subject
        card = bob.message_id_of(("contribution", 1))
        for _ in range(6):
            bob.send("/help")
        bob.react(card, "👀")  # a reaction row (kept: a redaction is resolved through it)
        with app.db.session() as s:
            handled = s.execute(select(func.count()).select_from(InboxEvent)).scalar_one()
            outbox = s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
        assert handled > 10 and outbox > 10
        clock.advance(days=3)
        # A pending event and a fresh one are never pruned.
        recent = chat("recent")
        recent.send("/help")
        with app.db.session() as s:
            s.add(
                InboxEvent(
                    platform="console",
                    event_key="pending-1",
                    status="pending",
                    event={"context": {}, "payload": {"kind": "unsupported", "what": "x"}},
                    received_at=clock.now - timedelta(days=60),
                    processed_at=None,
                    kind="unsupported",
                )
            )
        steps = []
        housekeeping = Housekeeping(app.db, app.clock, app.settings)
        while (n := housekeeping.prune_step()) > 0:
            steps.append(n)
        # At most 5 inbox rows deleted, 5 outbox rows deleted and 5 emptied per transaction.
        assert max(steps) <= 15 and len(steps) > 2
        inbox = rows(app, InboxEvent)
        assert {r.kind for r in inbox if r.received_at < clock.now - timedelta(days=2)} == {
            "reaction",
            "unsupported",
        }
        assert [r.status for r in inbox if r.event_key == "pending-1"] == ["pending"]
        assert [r for r in inbox if r.user_id == "recent"]
        left = rows(app, OutboxMessage)
        old = [r for r in left if r.created_at < clock.now - timedelta(days=2)]
        assert old and all(r.subject for r in old)
        assert "contribution:1" in {r.subject for r in old}
        # Kept for their subject only: their text is gone.
        assert all(r.trimmed_at is not None for r in old)
        assert not [r for r in old if "Une idée à garder" in str(r.message)]
        # The card still maps a reaction to its idea after the pruning.
        supports = count(app, Support)
        bob.react(card, "👍")
        assert count(app, Support) == supports + 1
        assert count(app, Contribution) == 1
    finally:
        app.close()
