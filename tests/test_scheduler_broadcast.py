"""Subscriptions, announcement channels, announcements, and the broadcast lane: pacing,
throttling on the broadcast lane only, unreachable recipients, retries, progress, and a send
interrupted by SIGKILL then resumed without sending twice."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.broadcasts import BroadcastService
from bot.channels import Pace
from bot.delivery import OutboxSender
from bot.i18n import gettext, use_locale
from bot.messages import ChatType, parse_command
from bot.services import Services
from storage.models import Citizen
from storage.models_scheduler import AnnouncementChannel, Broadcast, BroadcastDelivery
from storage.repositories import Repos
from tests.conftest import OPEN_TIME, SEED
from tests.support.harness import Chat, FakeClock
from tests.support.scheduling import (
    RecordingChannel,
    Scheduled,
    add_subscribers,
    read_lines,
    scheduled,
    scheduler_app,
)

ROOT = Path(__file__).resolve().parent.parent


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


@pytest.fixture
def world(sqlite_url: str, clock: FakeClock) -> Iterator[Scheduled]:
    """The seed consultation, open (19 Aug 2019), the opening already run."""
    from bot.consultation_file import load_consultation_file

    app = scheduler_app(sqlite_url, clock, load_consultation_file(SEED))
    s = scheduled(app)
    yield s
    s.close()
    app.close()


def announce_all(s: Scheduled, text: str = "Réunion publique jeudi") -> int:
    with s.app.db.session() as session:
        repos = Repos(s.app.db, session)
        info = Services(repos, s.app.clock()).consultations.by_slug("ville-intelligente")
        return BroadcastService(repos, s.app.clock()).announcement(info, {"fr": text})


# --------------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize("buttons", [False, True], ids=["numbered", "buttons"])
def test_the_news_choice_is_offered_at_first_contact_until_made(world, buttons):
    alice = Chat(world.app.engine, user="alice", language="en", buttons=buttons)
    replies = alice.send("/start")
    offer = tr("en", "Yes, keep me informed")
    assert offer in (
        replies.text if not buttons else " ".join(b.label for _m, b in replies.buttons())
    )
    assert "/reminders on" in replies.text
    replies = alice.press("news:on")
    assert "Type /reminders off to stop them" in replies.text
    replies = alice.send("/start")
    assert offer not in replies.text and all(b.action != "news:on" for _m, b in replies.buttons())
    assert "You receive the news" in alice.send("/reminders").text
    assert "you will not receive news" in alice.send("/reminders off").text
    assert "You do not receive the news" in alice.send("/reminders").text
    replies = alice.send("/reminders maybe")  # not on/off: the declared usage, nothing changes
    assert "Usage: /reminders [on|off]" in replies.text
    assert "You do not receive the news" in alice.send("/reminders").text
    # In a group, no personal offer.
    group = Chat(
        world.app.engine, user="bob", language="en", chat_type=ChatType.GROUP, chat_id="-5"
    )
    assert offer not in group.send("/start@parlons_bot").text


def test_stop_turns_every_subscription_off(world):
    alice = Chat(world.app.engine, user="alice", language="fr")
    alice.send("/start")
    alice.press("news:on")
    replies = alice.send("/stop")
    stopped = (
        "You will not receive any more news or reminders. You can still take part whenever "
        "you like; type /reminders on to receive the news again."
    )
    assert tr("fr", stopped) in replies.text
    with world.app.db.session() as session:
        from storage.models_scheduler import Subscription

        assert [s.news for s in session.exec(select(Subscription)).all()] == [False]


async def test_announcement_channels_get_news_in_their_language(world, clock):
    admin_group = Chat(
        world.app.engine, user="admin", language="fr", chat_type=ChatType.GROUP, chat_id="-100"
    )
    citizen_group = Chat(
        world.app.engine, user="eve", language="fr", chat_type=ChatType.GROUP, chat_id="-200"
    )
    admin = Chat(world.app.engine, user="admin", language="en")
    assert "modérateurs" in citizen_group.send("/announce_here").text  # not a moderator
    assert "in the group or room" in admin.send("/announce_here").text  # not in private
    assert "anglais" in admin_group.send("/announce_here en").text
    assert "déjà" in admin_group.send("/announce_here en").text
    Chat(
        world.app.engine, user="admin", language="fr", chat_type=ChatType.GROUP, chat_id="-300"
    ).send("/announce_here")
    alice = Chat(world.app.engine, user="alice", language="fr")
    alice.send("/start")
    alice.press("news:on")

    replies = admin.send(
        "/announce [fr] Réunion publique jeudi à 18 h\n[en] Public meeting on Thursday at 6 pm"
    )
    assert "3 recipients" in replies.text and "English, French" in replies.text
    await world.tick()
    assert world.channel.to("-100")[0].text.count("Public meeting on Thursday at 6 pm") == 1
    assert "Réunion publique" in world.channel.to("-300")[0].text
    assert "Réunion publique" in world.channel.to("alice")[0].text
    assert "/reminders off" not in world.channel.to("-100")[0].text  # no personal footer

    done = tr("fr", "Done: no more news will be posted here.")
    assert done in admin_group.send("/announce_stop").text
    not_one = tr("fr", "This chat is not an announcement channel.")
    assert not_one in admin_group.send("/announce_stop").text
    world.channel.records.clear()
    admin.send("/announce Deuxième annonce")
    await world.tick()
    assert set(world.channel.chats()) == {"-300", "alice"}


async def test_a_scheduled_announcement_goes_out_at_its_time(world, clock):
    admin = Chat(world.app.engine, user="admin", language="en")
    alice = Chat(world.app.engine, user="alice", language="fr")
    alice.send("/start")
    alice.press("news:on")
    replies = admin.send("/announce at 2019-08-20 18:30 Atelier demain soir")
    assert "Announcement scheduled for Aug 20, 2019, 6:30" in replies.text
    assert "Atelier demain soir" in admin.send("/schedule").text
    refused = admin.send("/announce at 2019-08-32 18:30 bad").text  # refused, says why
    assert "I could not read “2019-08-32 18:30”" in refused
    await world.tick()
    assert world.channel.to("alice")[0].text.startswith("🟢")  # (the opening, run late)
    world.channel.records.clear()
    clock.now = OPEN_TIME.replace(day=20, hour=18, minute=29)
    await world.tick()
    assert world.channel.records == []
    clock.advance(minutes=1)
    await world.tick()
    assert "Atelier demain soir" in world.channel.to("alice")[0].text
    assert "Atelier" not in admin.send("/schedule").text


# --------------------------------------------------------------------------- the lane


async def test_pace_per_chat_and_per_group_while_others_proceed(world, clock):
    admin = Chat(world.app.engine, user="admin", language="en")
    admin.send("/start")
    Chat(
        world.app.engine, user="admin", language="en", chat_type=ChatType.GROUP, chat_id="-100"
    ).send("/announce_here")
    add_subscribers(world.app, 1, 30)
    pace = Pace(per_second=200, per_chat_interval=0.25, per_group_per_minute=120)
    s = scheduled(world.app, RecordingChannel(), pace)
    try:
        await s.tick()  # the opening (to 31 chats)
        admin.send("/close confirm")
        clock.advance(seconds=1)
        await s.tick()  # the results: four parts for the admin and the group
        for chat, interval in (("admin", 0.25), ("-100", 0.5)):
            times = [r.at for r in s.channel.records if r.chat_id == chat][-4:]
            assert len(times) == 4
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= interval * 0.95, gaps
        # Others were served while those two waited between their parts.
        first_admin = [r.at for r in s.channel.records if r.chat_id == "admin"][-4]
        last_admin = [r.at for r in s.channel.records if r.chat_id == "admin"][-1]
        between = [r for r in s.channel.records if first_admin < r.at < last_admin]
        assert any(r.chat_id.startswith("citizen") for r in between)
        # Overall: no one-second window over the rate plus the small burst.
        stamps = sorted(r.at for r in s.channel.records)
        for i, t in enumerate(stamps):
            assert sum(1 for u in stamps[i:] if u < t + 0.1) <= 200 * 0.1 + 5
    finally:
        s.close()


async def test_retry_after_pauses_the_broadcast_lane_only(world, clock):
    add_subscribers(world.app, 1, 5)
    await world.tick()
    world.channel.records.clear()
    announce_all(world)
    channel = world.channel
    channel.throttle["*"] = 1.5  # the next send answers 429 (retry after 1.5 s)
    sender = world.service.senders["console"]
    lane = asyncio.create_task(sender.flush())
    await asyncio.sleep(0.2)
    # Meanwhile a citizen writes: the interactive reply goes out at once.
    bob = Chat(world.app.engine, user="bob", language="en")
    event = bob._event(parse_command("/stats") or parse_command("/help"))  # type: ignore[arg-type]
    started = time.monotonic()
    assert world.app.engine.handle(event)
    replies = OutboxSender(world.runtime, channel)
    assert await replies.flush() >= 1
    reply_at = channel.to("bob")[0].at
    assert reply_at - started < 0.5
    await lane
    assert sender.stats.throttled == 1 and sender.stats.throttled_seconds == 1.5
    firsts = [r.at for r in channel.records if r.chat_id.startswith("citizen")]
    assert len(firsts) == 5 and min(firsts) > reply_at  # the lane waited, the reply did not


async def test_unreachable_recipients_are_dropped_and_groups_removed(world, clock):
    users = add_subscribers(world.app, 1, 3)
    admin = Chat(world.app.engine, user="admin", language="en")
    Chat(
        world.app.engine, user="admin", language="en", chat_type=ChatType.GROUP, chat_id="-9"
    ).send("/announce_here")
    world.channel.blocked = {users[1], "-9"}
    await world.tick()
    assert set(world.channel.chats()) == {users[0], users[2]}
    with world.app.db.session() as session:
        blocked = session.exec(select(Citizen).where(Citizen.platform_user_id == users[1])).one()
        assert not blocked.reachable
        assert session.exec(select(AnnouncementChannel)).all() == []
        statuses = Counter(d.status for d in session.exec(select(BroadcastDelivery)).all())
    assert statuses == {"sent": 2, "failed": 2}
    world.channel.records.clear()
    admin.send("/announce Encore")
    await world.tick()
    assert set(world.channel.chats()) == {users[0], users[2]}  # not even tried again
    assert world.channel.attempts.total() == 4 + 2


async def test_temporary_failures_are_retried(world, clock):
    add_subscribers(world.app, 1, 2)
    await world.tick()
    world.channel.records.clear()
    world.service.senders["console"].backoff = 0.01
    broadcast_id = announce_all(world)
    with world.app.db.session() as session:
        first = session.exec(
            select(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id)
        ).first()
        assert first is not None
    world.channel.flaky[f"bc-{first.id}-0"] = 2
    await world.tick()
    assert world.channel.attempts[f"bc-{first.id}-0"] == 3
    assert len(world.channel.records) == 2


async def test_progress_in_chat_and_on_the_command_line(world, clock, sqlite_url, monkeypatch):
    add_subscribers(world.app, 1, 40)
    await world.tick()
    admin = Chat(world.app.engine, user="admin", language="en")
    admin.send("/start")
    announce_all(world)
    replies = admin.send("/broadcasts")
    assert "#2 Announcement" in replies.text and "0 of 40 sent" in replies.text
    assert "#1 Opening" in replies.text and "40 of 40 sent" in replies.text
    assert "modérateurs" in Chat(world.app.engine, user="eve").send("/broadcasts").text
    from bot.cli import app as cli

    monkeypatch.setenv("PARLONS_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(cli, ["broadcast", "status"])
    assert result.exit_code == 0, result.output
    assert "░" * 20 in result.output and " 0/40 sent" in result.output
    assert "█" * 20 + " 100%  40/40 sent" in result.output
    await world.tick()
    result = CliRunner().invoke(cli, ["broadcast", "status"])
    assert " 0/40 sent" not in result.output and "░" not in result.output


# --------------------------------------------------------------------------- crash


def _worker(db: str, out: Path, *, delay: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.scheduler_worker", "--db", db, "--out", str(out),
         "--delay", str(delay), "--poll", "0.2", "--log", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_broadcast_killed_by_sigkill_resumes_without_sending_twice(tmp_path, sqlite_url):
    from bot.app import build_app
    from bot.consultation_file import load_consultation_file
    from bot.settings import Settings

    clock = FakeClock(OPEN_TIME)
    app = build_app(Settings(database_url=sqlite_url), clock=clock)
    app.import_consultation(load_consultation_file(SEED))
    users = add_subscribers(app, 1, 300)
    with app.db.session() as session:
        repos = Repos(app.db, session)
        info = Services(repos, clock()).consultations.by_slug("ville-intelligente")
        broadcast_id = BroadcastService(repos, clock()).announcement(info, {"fr": "Bonjour"})
    out = tmp_path / "sent.jsonl"

    def delivered() -> int:
        return len(read_lines(out))

    def done() -> bool:
        with app.db.session() as session:
            row = session.get(Broadcast, broadcast_id)
            return row is not None and row.status == "done"

    crashes = 0
    for _ in range(3):  # kill it three times mid-send
        worker = _worker(sqlite_url, out, delay=0.004)
        target = delivered() + 60
        _wait(lambda t=target: delivered() >= t, 60, "sends")  # type: ignore[misc]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        crashes += 1
    assert not done()
    worker = _worker(sqlite_url, out, delay=0.0)
    try:
        _wait(done, 60, "the broadcast to finish")
    finally:
        worker.terminate()
        worker.wait(10)
    with app.db.session() as session:
        rows = session.exec(
            select(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id)
        ).all()
    keys = {f"bc-{d.id}-0": d.chat_id for d in rows}
    assert Counter(d.status for d in rows) == {"sent": 300}
    # (The workers run on the real clock: they also closed the seed consultation and posted
    # its results, a broadcast of its own; only the announcement is counted here.)
    lines = [line for line in read_lines(out) if line["key"] in keys]
    assert {line["chat"] for line in lines} == set(users)
    per_key = Counter(line["key"] for line in lines)
    assert set(per_key) == set(keys)
    for key, _n in per_key.items():
        assert keys[key] == next(line["chat"] for line in lines if line["key"] == key)
    twice = [k for k, n in per_key.items() if n > 1]
    # Only the one message in flight at each crash may have gone twice (Telegram's case);
    # with the key as a transaction id (Matrix) even that one is deduplicated.
    assert len(twice) <= crashes and all(per_key[k] == 2 for k in twice)
    assert len({line["pid"] for line in lines}) == crashes + 1  # four processes shared it
    app.close()


# --------------------------------------------------------------------------- rights, bad input


async def test_personal_data_and_forget(world, clock):
    from bot.broadcasts import forget, personal_data
    from storage.models_scheduler import PrivateChat, Subscription

    alice = Chat(world.app.engine, user="alice", language="fr")
    alice.send("/start")
    alice.press("news:on")
    await world.tick()  # the opening reaches her
    announce_all(world)  # and an announcement she has not received yet
    with world.app.db.session() as session:
        repos = Repos(world.app.db, session)
        citizen = session.exec(select(Citizen).where(Citizen.platform_user_id == "alice")).one()
        assert citizen.id is not None
        data = personal_data(repos, citizen.id)
        assert data["private_chat"] == {
            "platform": "console",
            "chat_id": "alice",
            "language": "fr",
        }
        assert [n["news"] for n in data["news"]] == [True]
        assert data["messages_received"] == {"opening": 1, "announcement": 1}
        forget(repos, citizen.id)
    with world.app.db.session() as session:
        assert session.exec(select(PrivateChat)).all() == []
        assert session.exec(select(Subscription)).all() == []
        rows = session.exec(select(BroadcastDelivery)).all()
        assert {r.chat_id.startswith("forgotten-") for r in rows} == {True}
        assert {r.citizen_id for r in rows} == {None}
        assert sorted(r.status for r in rows) == ["sent", "skipped"]
    world.channel.records.clear()
    await world.tick()
    assert world.channel.records == []  # the pending announcement is not sent to her


def test_bad_moderator_input_is_refused_and_changes_nothing(world, clock):
    admin = Chat(world.app.engine, user="admin", language="en")
    before = admin.send("/schedule").text
    assert "The announcement is empty" in admin.send("/announce").text
    assert "The announcement is empty" in admin.send("/announce at 2019-09-01 10:00").text
    assert "The announcement is empty" in admin.send("/announce [en]").text
    assert "4000 characters" not in admin.send("/announce " + "x" * 3600).text
    assert "limit is 3500" in admin.send("/announce " + "x" * 3600).text
    assert "Usage: /close [confirm]" in admin.send("/close nonsense").text
    assert "Usage: /extend" in admin.send("/extend").text
    assert "I could not read “tomorrow”" in admin.send("/extend tomorrow").text
    assert "I could not read “2019-09-10 25:00”" in admin.send("/extend 2019-09-10 25:00").text
    with world.app.db.session() as session:
        assert session.exec(select(Broadcast)).all() == []
    assert admin.send("/schedule").text == before
    for command in (
        "/schedule",
        "/announce hi",
        "/extend 2019-09-10",
        "/close confirm",
        "/remind",
    ):
        replies = Chat(world.app.engine, user="eve", language="en").send(command)
        assert "reserved for the consultation's moderators" in replies.text, command
