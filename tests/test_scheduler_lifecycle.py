"""The lifecycle driven by a fake clock: opening, closing and results at their times, an
extension, closing early, downtime across due times, exactly-once runs, and draft/archived."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import func, select

from bot.domain import Phase
from bot.i18n import fmt_datetime, gettext, use_locale
from bot.messages import ChatType
from bot.schedule import Lifecycle, SchedulerConfig, ScheduleRunner
from bot.services import Services
from storage.models import Consultation
from storage.models_scheduler import ActionRun, Broadcast, ScheduledAction
from storage.repositories import Repos
from tests.support.harness import Chat, FakeClock
from tests.support.scheduling import Scheduled, consultation_doc, scheduled, scheduler_app

PARIS = ZoneInfo("Europe/Paris")
OPENS = datetime(2019, 9, 2, 10, 0, tzinfo=PARIS)  # 08:00 UTC (summer time)
CLOSES = datetime(2019, 10, 31, 18, 0, tzinfo=PARIS)  # 17:00 UTC (winter time)
BEFORE = datetime(2019, 8, 26, 10, 0, tzinfo=PARIS)


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def doc(**kw: object):  # type: ignore[no-untyped-def]
    args = {"opens_at": "2019-09-02T10:00:00", "closes_at": "2019-10-31T18:00:00", **kw}
    return consultation_doc(**args)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(BEFORE.astimezone(UTC))


@pytest.fixture
def world(sqlite_url: str, clock: FakeClock) -> Iterator[Scheduled]:
    app = scheduler_app(sqlite_url, clock, doc())
    s = scheduled(app)
    yield s
    s.close()
    app.close()


def people(s: Scheduled) -> dict[str, Chat]:
    """alice (fr) and bob (en) want news, carol does not, dave never answered the offer;
    a group is an announcement channel in English; the administrator has a private chat."""
    engine = s.app.engine
    chats = {
        "alice": Chat(engine, user="alice", language="fr"),
        "bob": Chat(engine, user="bob", language="en"),
        "carol": Chat(engine, user="carol", language="fr"),
        "dave": Chat(engine, user="dave", language="fr"),
        "admin": Chat(engine, user="admin", language="en"),
        "group": Chat(
            engine, user="admin", language="en", chat_type=ChatType.GROUP, chat_id="-100"
        ),
    }
    for name in ("alice", "bob", "carol", "dave", "admin"):
        chats[name].send("/start")
    chats["alice"].press("news:on")
    chats["bob"].send("/reminders on")
    chats["carol"].press("news:off")
    chats["group"].send("/announce_here en")
    return chats


def status(s: Scheduled) -> str:
    with s.app.db.session() as session:
        return session.exec(select(Consultation.status)).one()


def at(clock: FakeClock, when: datetime) -> None:
    clock.now = when.astimezone(UTC)


def contribute(chat: Chat, *answers: str) -> None:
    chat.send("/participate")
    for answer in answers:
        chat.send(answer)
        chat.press("ok")


async def test_opening_at_its_time_posts_news_to_subscribers_and_channels(world, clock):
    chats = people(world)
    replies = chats["alice"].send("/participate")
    assert "2 sept. 2019" in replies.text  # not open yet: the opening date in French
    assert await world.tick() == []
    at(clock, OPENS - timedelta(seconds=1))
    assert await world.tick() == []
    assert world.channel.records == [] and status(world) == "scheduled"

    at(clock, OPENS)
    (outcome,) = await world.tick()
    assert (outcome.action, outcome.outcome) == ("1:open", "done")
    assert status(world) == "open"
    got = world.channel.chats()
    assert set(got) == {"alice", "bob", "-100"} and max(got.values()) == 1
    date_fr = "31 oct. 2019"
    assert tr("fr", "The consultation is open until {date}.", date=date_fr) in (
        world.channel.to("alice")[0].text
    )
    assert tr("en", "The consultation is open until {date}.", date="Oct 31, 2019") in (
        world.channel.to("bob")[0].text
    )
    # Exactly once, however often the clock ticks.
    clock.advance(minutes=5)
    assert await world.tick() == []
    assert len(world.channel.records) == 3
    assert "✍️" in chats["alice"].send("/start").text  # participation is open


async def test_closing_and_results_are_posted_once_to_each_audience(world, clock):
    chats = people(world)
    at(clock, OPENS + timedelta(days=1))
    await world.tick()
    contribute(chats["alice"], "Une maison du projet", "Le budget participatif")
    contribute(chats["dave"], "Des bancs partout")
    chats["carol"].send("/support 3")  # carol opted out of news but takes part
    chats["bob"].send("/support 1")
    world.channel.records.clear()

    at(clock, CLOSES)
    outcomes = await world.tick()
    assert [(o.action, o.outcome) for o in outcomes] == [
        ("1:close", "done"),
        ("1:results", "done"),
    ]
    assert status(world) == "closed"
    replies = chats["bob"].send("/support 2")
    closed = (
        "This consultation closed on {date}: contributions, supports and comments are no "
        "longer accepted. Type /stats to see its results."
    )
    assert tr("en", closed, date="Oct 31, 2019") in replies.text
    by_chat: dict[str, list[str | None]] = {}
    for r in world.channel.records:
        by_chat.setdefault(r.chat_id, []).append(r.attachment)
    # Participants and subscribers: the ranking and the chart; channels and moderators: also
    # the files the figures come from. carol opted out; nobody gets it twice.
    assert by_chat == {
        "-100": [None, "chart-en.png", "results-demo.csv", "results-demo.json"],
        "admin": [None, "chart-en.png", "results-demo.csv", "results-demo.json"],
        "alice": [None, "chart-fr.png"],
        "bob": [None, "chart-en.png"],
        "dave": [None, "chart-fr.png"],
    }
    alice_text = world.channel.to("alice")[0].text
    assert "Une maison du projet" in alice_text and "Résultats" in alice_text
    assert "Results" in world.channel.to("bob")[0].text
    clock.advance(hours=1)
    assert await world.tick() == []
    with world.app.db.session() as session:
        assert session.exec(select(func.count()).select_from(Broadcast)).one() == 2


async def test_extension_moves_the_closing_and_the_schedule(world, clock):
    chats = people(world)
    at(clock, OPENS + timedelta(days=10))
    await world.tick()
    world.channel.records.clear()

    # Only moderators, only later dates, only readable dates; refused input changes nothing.
    assert tr("fr", "This command is reserved for the consultation's moderators.") in (
        chats["alice"].send("/extend 2019-11-15").text
    )
    assert "/extend" in chats["admin"].send("/extend").text  # usage
    assert "2019-15-45" in chats["admin"].send("/extend 2019-15-45").text
    earlier = chats["admin"].send("/extend 2019-10-20")
    assert "/close" in earlier.text
    with world.app.db.session() as session:
        assert session.exec(select(Consultation.closes_at)).one() == CLOSES.astimezone(UTC)

    replies = chats["admin"].send("/extend 2019-11-15")
    new_close = datetime(2019, 11, 15, 18, 0, tzinfo=PARIS)  # the same local time
    with use_locale("en"):
        assert fmt_datetime(new_close, "Europe/Paris") in replies.text
    with world.app.db.session() as session:
        rows = {
            r.key: r.due_at
            for r in session.exec(select(ScheduledAction)).all()
            if r.status == "pending"
        }
    assert rows["close"] == rows["results"] == new_close.astimezone(UTC)
    assert "Nov 15, 2019" in chats["admin"].send("/schedule").text

    await world.tick()  # the extension is news for subscribers and channels
    assert set(world.channel.chats()) == {"alice", "bob", "-100"}
    text = world.channel.to("alice")[0].text
    assert "15 nov. 2019" in text, text

    at(clock, CLOSES + timedelta(minutes=1))  # the old closing time passes: still open
    assert await world.tick() == []
    assert status(world) == "open"
    contribute(chats["carol"], "Encore une idée")
    at(clock, new_close)
    outcomes = await world.tick()
    assert [o.action for o in outcomes] == ["1:close", "1:results"]
    assert status(world) == "closed"
    assert tr("en", "This is only possible while the consultation is open.") in (
        chats["admin"].send("/extend 2019-12-01").text
    )


async def test_close_now_asks_for_confirmation_then_closes_and_posts_results(world, clock):
    chats = people(world)
    at(clock, OPENS + timedelta(days=3))
    await world.tick()
    replies = chats["admin"].send("/close")
    assert "/close confirm" in replies.text and status(world) == "open"
    with world.app.db.session() as session:
        assert session.exec(select(Consultation.closes_at)).one() == CLOSES.astimezone(UTC)
    chats["admin"].press("cls:confirm")
    with world.app.db.session() as session:
        info = Services(Repos(world.app.db, session), clock()).consultations.by_slug("demo")
    assert info.phase(clock()) == Phase.CLOSED  # at once, before the scheduler runs
    outcomes = await world.tick()
    assert [(o.action, o.outcome) for o in outcomes] == [
        ("1:close", "done"),
        ("1:results", "done"),
    ]
    assert status(world) == "closed"


async def test_downtime_runs_opening_closing_and_results_but_not_stale_reminders(
    sqlite_url, clock, caplog
):
    reminders = {"before_close": ["7d", "1d"]}
    app = scheduler_app(sqlite_url, clock, doc(reminders=reminders))
    s = scheduled(app)
    try:
        chats = people(s)
        # Down from before the opening until two hours after the 7-day reminder.
        at(clock, CLOSES - timedelta(days=7) + timedelta(hours=2))
        caplog.set_level(logging.INFO)
        outcomes = await s.tick()
        assert [(o.action, o.outcome) for o in outcomes] == [
            ("1:open", "done"),
            ("1:remind:before:7d", "skipped"),
        ]
        assert "missed by 2h00m" in (outcomes[1].note or "")
        assert any("skipped 1:remind:before:7d" in r.getMessage() for r in caplog.records)
        s.channel.records.clear()
        # Back 30 minutes after the 1-day reminder: within the hour of grace, it is sent.
        at(clock, CLOSES - timedelta(days=1) + timedelta(minutes=30))
        outcomes = await s.tick()
        assert [(o.action, o.outcome) for o in outcomes] == [("1:remind:before:1d", "done")]
        assert {"alice", "bob"} <= set(s.channel.chats())
        # Down across the closing, for three days: closing and results still happen, once.
        at(clock, CLOSES + timedelta(days=3))
        outcomes = await s.tick()
        assert [(o.action, o.outcome) for o in outcomes] == [
            ("1:close", "done"),
            ("1:results", "done"),
        ]
        with app.db.session() as session:
            runs = session.exec(select(ActionRun)).all()
        assert sorted((r.action, r.outcome) for r in runs) == [
            ("1:close", "done"),
            ("1:open", "done"),
            ("1:remind:before:1d", "done"),
            ("1:remind:before:7d", "skipped"),
            ("1:results", "done"),
        ]
        assert chats  # (the people exist for the reminders above)
    finally:
        s.close()
        app.close()


def test_concurrent_runners_run_each_action_exactly_once(db_url, clock):
    """Two workers racing on every due action (threads on the same database): the unique
    (action, due time) row lets exactly one of them run it."""
    app = scheduler_app(db_url, clock, doc(reminders={"before_close": ["7d", "1d"]}))
    try:
        at(clock, CLOSES + timedelta(minutes=10))
        config = SchedulerConfig(reminder_grace=timedelta(days=365))
        runners = [ScheduleRunner(app.db, clock, config) for _ in range(2)]
        runners[0].sync_all()
        due = runners[0].due()
        assert len(due) == 5
        outcomes: list[tuple[int, str]] = []
        lock = threading.Lock()

        def work(runner: ScheduleRunner) -> None:
            for action_id in due:
                outcome = runner.run(action_id)
                with lock:
                    outcomes.append((action_id, outcome.outcome))

        threads = [threading.Thread(target=work, args=(r,)) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(outcomes) == 10
        for action_id in due:
            results = [o for a, o in outcomes if a == action_id]
            # One of the two ran it (the reminders are skipped: the consultation is closed),
            # the other found it already done.
            ran = [o for o in results if o in ("done", "skipped")]
            assert len(ran) == 1, results
            assert set(results) - set(ran) <= {"already-ran", "not-pending"}, results
        with app.db.session() as session:
            assert session.exec(select(func.count()).select_from(ActionRun)).one() == 5
            kinds = sorted(b.kind for b in session.exec(select(Broadcast)).all())
        # Run after the closing: the opening posts no news, the results are posted once.
        assert kinds == ["results"]
    finally:
        app.close()


async def test_draft_and_archived_consultations_are_not_scheduled(world, clock):
    chats = people(world)
    with world.app.db.session() as session:
        lifecycle = Lifecycle(Repos(world.app.db, session), clock())
        info = lifecycle.set_status(lifecycle.info(1), "draft")
        assert info.phase(clock()) == Phase.DRAFT
    at(clock, OPENS + timedelta(hours=1))
    assert await world.tick() == []
    assert status(world) == "draft" and world.channel.records == []
    with world.app.db.session() as session:
        pending = session.exec(select(ScheduledAction).where(ScheduledAction.status == "pending"))
        assert pending.all() == []
    # Back to scheduled (its opening date must still be ahead).
    at(clock, OPENS - timedelta(days=1))
    with world.app.db.session() as session:
        lifecycle = Lifecycle(Repos(world.app.db, session), clock())
        lifecycle.set_status(lifecycle.info(1), "scheduled")
    at(clock, OPENS)
    assert [o.action for o in await world.tick()] == ["1:open"]
    at(clock, CLOSES)
    await world.tick()
    with world.app.db.session() as session:
        lifecycle = Lifecycle(Repos(world.app.db, session), clock())
        info = lifecycle.set_status(lifecycle.info(1), "archived")
    assert info.phase(clock()) == Phase.ARCHIVED and info.allows(clock()).results
    assert chats["alice"].send("/stats")  # results stay visible
