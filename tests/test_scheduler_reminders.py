"""Reminders: personal content, only for subscribers with something left to do, a weekly cap,
quiet hours in the consultation's time zone, and daylight-saving changes in Europe/Paris."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.i18n import gettext, ngettext, use_locale
from bot.schedule import Lifecycle
from storage.repositories import Repos
from tests.support.harness import Chat, FakeClock
from tests.support.scheduling import Scheduled, consultation_doc, scheduled, scheduler_app

PARIS = ZoneInfo("Europe/Paris")
POLICY = {"before_close": ["7d", "1d"], "max_per_week": 2, "quiet_hours": "21:00-09:00"}


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)  # type: ignore[misc]


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def ntr(locale: str, singular: str, plural: str, n: int, **params: object) -> str:
    with use_locale(locale):
        return ngettext(singular, plural, n).format(n=n, **params)


def make(url: str, clock: FakeClock, **kw: object) -> Scheduled:
    args = {
        "opens_at": "2019-09-02T10:00:00",
        "closes_at": "2019-10-31T18:00:00",
        "reminders": POLICY,
        **kw,
    }
    app = scheduler_app(url, clock, consultation_doc(**args))  # type: ignore[arg-type]
    return scheduled(app)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(paris(2019, 9, 3, 10, 0))


@pytest.fixture
def world(sqlite_url: str, clock: FakeClock) -> Iterator[Scheduled]:
    s = make(sqlite_url, clock)
    yield s
    s.close()
    s.app.close()


def contribute(chat: Chat, *answers: str | None) -> None:
    chat.send("/participate")
    for answer in answers:
        if answer is None:
            chat.press("skip")
            continue
        chat.send(answer)
        chat.press("ok")


def citizens(s: Scheduled) -> dict[str, Chat]:
    engine = s.app.engine
    chats = {
        name: Chat(engine, user=name, language=lang)
        for name, lang in (("alice", "fr"), ("bob", "en"), ("carol", "fr"), ("dave", "fr"))
    }
    chats["erin"] = Chat(engine, user="erin", language="en")
    chats["admin"] = Chat(engine, user="admin", language="en")
    for name, chat in chats.items():
        chat.send("/start")
        if name != "dave":
            chat.send("/reminders on")
    chats["erin"].send("/stop")
    return chats


async def test_reminders_are_personal_and_only_for_those_with_something_left(world, clock):
    await world.tick()  # the opening
    chats = citizens(world)
    contribute(chats["alice"], "Une maison du projet", None)  # #1, question 2 left
    contribute(chats["bob"], "A citizens' assembly", "A budget vote")  # #2, #3
    contribute(chats["carol"], "Des jardins partagés", "Un conseil de quartier")  # #4, #5
    chats["bob"].send("/support 1")
    chats["carol"].send("/ideas 1")  # carol reads everything: nothing left for her
    chats["carol"].send("/ideas 2")
    world.channel.records.clear()

    clock.now = paris(2019, 10, 24, 18, 0)  # 7 days before closing
    (outcome,) = await world.tick()
    assert (outcome.action, outcome.outcome) == ("1:remind:before:7d", "done")
    # dave never subscribed, erin stopped, carol has nothing left to do; the admin has not
    # answered anything (a subscriber like any other).
    assert set(world.channel.chats()) == {"alice", "bob", "admin"}
    alice = world.channel.to("alice")[0].text
    closes_fr = "31 oct. 2019, 18:00"
    assert (
        ntr(
            "fr",
            "{n} day left to take part: the consultation closes on {date}.",
            "{n} days left to take part: the consultation closes on {date}.",
            7,
            date=closes_fr,
        )
        in alice
    )
    assert (
        ntr("fr", "You answered question {list}.", "You answered questions {list}.", 1, list="1")
        in alice
    )
    assert (
        ntr(
            "fr",
            "Question {list} is still waiting for your answer.",
            "Questions {list} are still waiting for your answers.",
            1,
            list="2",
        )
        in alice
    )
    assert (
        ntr(
            "fr",
            "Your contributions have received {n} support so far.",
            "Your contributions have received {n} supports so far.",
            1,
        )
        in alice
    )
    assert (
        ntr(
            "fr",
            "{n} idea from other participants is waiting for your opinion.",
            "{n} ideas from other participants are waiting for your opinion.",
            4,
        )
        in alice
    )
    assert "/participate" in alice and "/reminders off" in alice
    bob = world.channel.to("bob")[0].text
    assert "7 days left to take part" in bob
    assert tr("en", "You answered every question: thank you!") in bob
    assert "2 ideas from other participants are waiting for your opinion." in bob
    assert "/participate" not in bob  # nothing to answer, only ideas to read
    admin = world.channel.to("admin")[0].text
    assert "You have not answered the 2 questions yet." in admin


async def test_weekly_cap_counts_every_reminder_of_the_last_seven_days(world, clock):
    await world.tick()
    chats = citizens(world)
    world.channel.records.clear()
    for hour in (10, 11, 12):
        clock.now = paris(2019, 9, 10, hour, 0)
        replies = chats["admin"].send("/remind")
        assert "goes out in a moment" in replies.text
        await world.tick()
    # alice, bob, carol, dave?, admin... : each subscriber got two of the three.
    counts = world.channel.chats()
    assert counts == {"alice": 2, "bob": 2, "carol": 2, "admin": 2}
    # A week after the first one, there is room again.
    clock.now = paris(2019, 9, 17, 10, 30)
    chats["admin"].send("/remind")
    await world.tick()
    assert world.channel.chats()["alice"] == 3


async def test_quiet_hours_move_reminders_and_hold_a_long_send(sqlite_url, clock):
    # Closing at 08:00: "1d" falls at 08:00 (quiet) → 09:00; "10h" at 22:00 the evening
    # before → its end (09:00) is after the closing → just before the quiet hours, 20:59.
    s = make(
        sqlite_url,
        clock,
        closes_at="2019-10-31T08:00:00",
        reminders={"before_close": ["1d", "10h"], "quiet_hours": "21:00-09:00"},
    )
    try:
        with s.app.db.session() as session:
            lifecycle = Lifecycle(Repos(s.app.db, session), clock())
            lifecycle.sync(lifecycle.info(1))
            due = {r.key: r.due_at for r in lifecycle.upcoming(lifecycle.info(1))}
        assert due["remind:before:1d"] == paris(2019, 10, 30, 9, 0)
        assert due["remind:before:10h"] == paris(2019, 10, 30, 20, 59)
        await s.tick()
        chats = citizens(s)
        s.channel.records.clear()

        # A moderator's reminder during quiet hours waits for their end.
        clock.now = paris(2019, 9, 10, 22, 15)
        replies = chats["admin"].send("/remind")
        assert "quiet hours" in replies.text and "Sep 11, 2019, 9:00" in replies.text
        assert await s.tick() == []
        clock.now = paris(2019, 9, 11, 9, 0)
        assert [o.outcome for o in await s.tick()] == ["done"]
        assert set(s.channel.chats()) == {"alice", "bob", "carol", "dave", "admin"} - {"dave"}
        s.channel.records.clear()

        # A reminder round that starts just before quiet hours pauses during them.
        clock.now = paris(2019, 9, 12, 20, 58)
        chats["admin"].send("/remind")
        await s.runtime.call(s.service.runner.tick)  # created, not sent yet
        clock.now = paris(2019, 9, 12, 21, 30)
        sender = s.service.senders["console"]
        assert await sender.flush() == 0
        clock.now = paris(2019, 9, 13, 9, 0)
        assert await sender.flush() == 4
    finally:
        s.close()
        s.app.close()


# --------------------------------------------------------------------------- daylight saving


def planned(s: Scheduled, clock: FakeClock) -> dict[str, datetime]:
    with s.app.db.session() as session:
        lifecycle = Lifecycle(Repos(s.app.db, session), clock())
        lifecycle.sync(lifecycle.info(1))
        return {r.key: r.due_at for r in lifecycle.upcoming(lifecycle.info(1))}


def test_weekly_reminders_keep_the_local_time_across_both_changes(sqlite_url):
    # Friday 10:00 in Paris from March to November 2020: the clocks change on the last
    # Sundays of March (29) and October (25).
    clock = FakeClock(paris(2020, 3, 1, 12, 0))
    s = make(
        sqlite_url,
        clock,
        opens_at="2020-03-06T10:00:00",
        closes_at="2020-11-20T18:00:00",
        reminders={"weekly_while_open": True, "before_close": ["1d"]},
    )
    try:
        due = planned(s, clock)
        weekly = sorted(v for k, v in due.items() if k.startswith("remind:weekly:"))
        assert len(weekly) == 37
        local = {d.astimezone(PARIS).strftime("%a %H:%M") for d in weekly}
        assert local == {"Fri 10:00"}
        assert due["remind:weekly:3"] == datetime(2020, 3, 27, 9, 0, tzinfo=UTC)  # CET
        assert due["remind:weekly:4"] == datetime(2020, 4, 3, 8, 0, tzinfo=UTC)  # CEST
        assert due["remind:weekly:33"] == datetime(2020, 10, 23, 8, 0, tzinfo=UTC)  # CEST
        assert due["remind:weekly:34"] == datetime(2020, 10, 30, 9, 0, tzinfo=UTC)  # CET
        # Weeks are 7 local days: 167 and 169 hours across the changes.
        gaps = {b - a for a, b in itertools.pairwise(weekly)}
        assert gaps == {timedelta(hours=168), timedelta(hours=167), timedelta(hours=169)}
        assert due["remind:before:1d"] == paris(2020, 11, 19, 18, 0)
    finally:
        s.close()
        s.app.close()


@pytest.mark.parametrize(
    ("closes_at", "reminder", "hours"),
    [
        # Closing on the Sunday of a change: "1d" is the same local time the day before.
        ("2020-10-25T18:00:00", datetime(2020, 10, 24, 16, 0, tzinfo=UTC), 25),
        ("2020-03-29T18:00:00", datetime(2020, 3, 28, 17, 0, tzinfo=UTC), 23),
    ],
    ids=["october", "march"],
)
def test_one_day_before_closing_keeps_the_local_time(sqlite_url, closes_at, reminder, hours):
    clock = FakeClock(paris(2020, 3, 1, 12, 0))
    s = make(
        sqlite_url,
        clock,
        opens_at="2020-03-02T10:00:00",
        closes_at=closes_at,
        reminders={"before_close": ["1d", "12h"]},
    )
    try:
        due = planned(s, clock)
        assert due["remind:before:1d"] == reminder
        assert due["close"] - due["remind:before:1d"] == timedelta(hours=hours)
        assert due["close"] - due["remind:before:12h"] == timedelta(hours=12)  # hours are hours
    finally:
        s.close()
        s.app.close()


@pytest.mark.parametrize(
    ("opens_at", "expected", "start"),
    [
        # 02:30 on 25 Oct 2020 happens twice: the first one (CEST) is used, once.
        (
            "2020-10-18T02:30:00",
            datetime(2020, 10, 25, 0, 30, tzinfo=UTC),
            datetime(2020, 10, 24, 23, 0, tzinfo=UTC),
        ),
        # 02:30 on 29 Mar 2020 does not exist: 03:30 CEST (01:30 UTC), once.
        (
            "2020-03-22T02:30:00",
            datetime(2020, 3, 29, 1, 30, tzinfo=UTC),
            datetime(2020, 3, 28, 23, 0, tzinfo=UTC),
        ),
    ],
    ids=["october-twice", "march-gap"],
)
async def test_a_reminder_at_a_changing_hour_runs_exactly_once(
    sqlite_url, opens_at, expected, start
):
    clock = FakeClock(start - timedelta(days=8))
    s = make(
        sqlite_url,
        clock,
        opens_at=opens_at,
        closes_at="2020-11-30T12:00:00",
        reminders={"weekly_while_open": True},
    )
    try:
        citizens(s)
        assert planned(s, clock)["remind:weekly:1"] == expected
        clock.now = start - timedelta(days=1)
        await s.tick()  # the opening
        ran = []
        clock.now = start
        while clock.now < start + timedelta(hours=5):  # through the whole night, every 10 min
            ran += [o for o in await s.tick() if o.action == "1:remind:weekly:1"]
            clock.advance(minutes=10)
        assert len(ran) == 1 and ran[0].outcome == "done"
        assert expected <= ran[0].due_at < expected + timedelta(minutes=1)
    finally:
        s.close()
        s.app.close()


async def test_moderator_times_that_do_not_exist_or_happen_twice_are_refused(world, clock):
    chats = citizens(world)
    replies = chats["admin"].send("/announce at 2020-03-29 02:30 Réunion")
    gap = "{time} does not exist in {zone} on that day (the clocks go forward): choose "
    gap += "another time."
    assert tr("en", gap, time="02:30", zone="Europe/Paris") in replies.text
    replies = chats["admin"].send("/announce at 2019-10-27 02:30 Réunion")
    assert "happens twice" in replies.text
    replies = chats["admin"].send("/announce at 2019-09-01 10:00 Réunion")
    assert "is in the past" in replies.text
    assert "Nothing" not in chats["admin"].send("/schedule").text
    assert "Announcement" not in chats["admin"].send("/schedule").text
