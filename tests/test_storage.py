"""Storage on SQLite and on PostgreSQL: constraints, races, the inbox, the engine's
exactly-once processing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from bot import errors
from bot.messages import CommandMessage, EventContext, InboundEvent, TextMessage
from bot.services import Services
from storage.models import Citizen, Contribution, InboxEvent, OutboxMessage, Support
from storage.repositories import Repos
from tests.support.harness import Chat


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def _idea(any_app) -> int:  # type: ignore[no-untyped-def]
    author = Chat(any_app.engine, user="author")
    author.send("/participate")
    author.send("Une idée à soutenir")
    author.send("/confirm")
    with any_app.db.session() as s:
        return s.exec(select(Contribution.id)).one()


def test_support_is_unique_per_citizen_and_contribution(any_app):
    cid = _idea(any_app)
    Chat(any_app.engine, user="bob").send("/start")
    with any_app.db.session() as s:
        bob = s.exec(select(Citizen).where(Citizen.platform_user_id == "bob")).one()
    # The constraint itself, bypassing the service's check.
    with pytest.raises(IntegrityError), any_app.db.session() as s:
        s.add(Support(contribution_id=cid, citizen_id=bob.id, created_at=any_app.clock()))
        s.add(Support(contribution_id=cid, citizen_id=bob.id, created_at=any_app.clock()))
        s.flush()
    assert _count(any_app, Support) == 0


def test_fifty_concurrent_supports_by_one_citizen_leave_one(any_app):
    cid = _idea(any_app)
    Chat(any_app.engine, user="bob").send("/start")
    with any_app.db.session() as s:
        bob_id = s.exec(select(Citizen.id).where(Citizen.platform_user_id == "bob")).one()
    barrier = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            with any_app.db.session() as s:
                repos = Repos(any_app.db, s)
                services = Services(repos, any_app.clock())
                info = services.consultations.default()
                bob = repos.citizens.get(bob_id)
                assert bob is not None
                services.supports.support(info, cid, bob)
            result = "ok"
        except errors.AlreadySupported:
            result = "already"
        with lock:
            outcomes.append(result)

    with ThreadPoolExecutor(max_workers=50) as pool:
        for f in [pool.submit(attempt) for _ in range(50)]:
            f.result()
    assert outcomes.count("ok") == 1 and outcomes.count("already") == 49
    assert _count(any_app, Support) == 1


def test_fifty_concurrent_deliveries_of_one_event_have_one_effect(any_app):
    cid = _idea(any_app)
    chat = Chat(any_app.engine, user="bob")
    chat.send("/start")  # first contact (and the privacy notice accepted) before the race
    event = chat._event(CommandMessage("support", (str(cid),), str(cid)))
    barrier = threading.Barrier(20)

    def deliver() -> int:
        barrier.wait()
        return len(any_app.engine.handle(event))

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = [f.result() for f in [pool.submit(deliver) for _ in range(20)]]
    assert sum(1 for r in replies if r) == 1
    assert _count(any_app, Support) == 1
    with any_app.db.session() as s:
        row = s.exec(
            select(InboxEvent).where(InboxEvent.event_key == event.context.event_id)
        ).one()
        assert row.status == "done"
        assert (
            len(s.exec(select(OutboxMessage).where(OutboxMessage.inbox_id == row.id)).all()) >= 1
        )


def test_inbox_survives_until_processed_and_is_processed_once(any_app):
    engine = any_app.engine
    ctx = EventContext(
        platform="console", chat_id="carol", user_id="carol", event_id="e-1", language="en"
    )
    ctx2 = replace(ctx, event_id="e-2")
    events = [InboundEvent(ctx, CommandMessage("start")), InboundEvent(ctx2, TextMessage("hi"))]
    assert engine.ingest_many(events) == 2
    assert engine.ingest_many(events) == 0  # redelivery: deduplicated
    assert len(engine.pending("console")) == 2
    deliveries = engine.process_pending("console")
    assert deliveries and not engine.pending("console")
    assert engine.process_pending("console") == []
    # the replies wait in the outbox until the channel marks them sent
    assert {d.outbox_id for d in engine.pending_deliveries("console")} == {
        d.outbox_id for d in deliveries
    }
    for d in deliveries:
        engine.mark_sent(d.outbox_id, f"m{d.outbox_id}")
    assert engine.pending_deliveries("console") == []


def test_a_handler_crash_rolls_back_its_effect_and_apologises(any_app, monkeypatch):
    cid = _idea(any_app)
    from bot.handlers import ideas

    original = ideas._support_reply

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom after the support was written")

    monkeypatch.setattr(ideas, "_support_reply", broken)
    bob = Chat(any_app.engine, user="bob", language="en")
    replies = bob.send(f"/support {cid}")
    assert "something went wrong" in replies.text
    assert _count(any_app, Support) == 0  # the effect was rolled back with the failure
    with any_app.db.session() as s:
        statuses = [r.status for r in s.exec(select(InboxEvent)).all()]
    assert statuses.count("failed") == 1
    monkeypatch.setattr(ideas, "_support_reply", original)
    bob.send(f"/support {cid}")
    assert _count(any_app, Support) == 1


def test_citizens_are_keyed_by_platform_and_immutable_id(any_app):
    Chat(any_app.engine, user="42", platform="telegram", buttons=True).send("/start")
    Chat(any_app.engine, user="42", platform="matrix").send("/start")
    renamed = Chat(any_app.engine, user="42", platform="telegram", buttons=True)
    renamed.send("/start")
    with any_app.db.session() as s:
        rows = s.exec(select(Citizen).order_by(Citizen.platform)).all()
        assert [(c.platform, c.platform_user_id) for c in rows] == [
            ("matrix", "42"),
            ("telegram", "42"),
        ]
        assert len({c.pseudonym for c in rows}) == 2


def test_dialogue_state_is_per_platform_chat_and_user(any_app):
    a = Chat(any_app.engine, user="u1")
    a.send("/participate")
    b = Chat(any_app.engine, user="u1", platform="matrix")
    replies = b.send("Ceci n'est pas une réponse")  # no dialogue on this platform yet
    assert "Ceci n'est pas une réponse" not in replies.text
    replies = a.send("Ceci est une réponse")
    assert "Ceci est une réponse" in replies.text


def test_support_withdraw_and_counts_on_both_databases(any_app):
    cid = _idea(any_app)
    bob = Chat(any_app.engine, user="bob", language="en")
    assert "👍 1" in bob.send(f"/support {cid}").text
    assert "👍 0" in bob.send(f"/unsupport {cid}").text
    assert "do not support" in bob.send(f"/unsupport {cid}").text
    bob.send(f"/comment {cid} Tout à fait")
    text = bob.send("/stats").text
    assert "1 contribution" in text and "0 supports" in text and "2 participants" in text
