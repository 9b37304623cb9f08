"""Crash test: the Matrix bot runs as a real process (``parlons run``) against Synapse and is
killed with SIGKILL at random moments while citizens (real matrix-nio clients, some in
encrypted DMs) keep writing: contributions, typed supports, 👍 reactions and their redaction,
typed comments and comments by Matrix reply. It is restarted each time.

Afterwards every contribution, support and comment is recorded exactly once, every citizen
event was processed once, and the rooms' timelines hold each bot reply once (each bot event
carries its outbox key in ``org.parlons.key``): no reply was posted twice, not even for an event
whose reply was being sent when the process died.

What makes this pass: ``next_batch`` commits with the batch's inbox rows; an event's effect
commits with its status and replies; transaction ids derive from the outbox ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import nio
import pytest
from sqlmodel import select

from bot.app import App, build_app
from bot.settings import Settings
from storage.models import (
    ChannelState,
    Comment,
    Contribution,
    InboxEvent,
    OutboxMessage,
    Support,
)
from storage.models import (
    Citizen as CitizenRow,
)
from tests.support.matrix_bot import Citizen, Replies, timeline_keys, wait_joined, wait_processed
from tests.support.matrix_fixtures import (
    AccountFactory,
    ClientFactory,
    MatrixTimeout,
    create_dm,
    send_text,
)
from tests.support.processes import BotProcess, open_consultation
from tests.support.synapse import MatrixAccount, SynapseServer

CITIZENS = 5
ENCRYPTED = 2  # the first ones talk in encrypted DMs
MIN_KILLS = 8
TIMEOUT = 240.0


async def chaos(bot: BotProcess, rng: random.Random, done: asyncio.Event) -> int:
    """Start the bot and kill it at a random moment, again and again until the citizens are
    done and at least MIN_KILLS kills happened; then leave it running. Returns the kills."""
    kills = 0
    while True:
        await bot.start()
        await bot.wait_logged(b"matrix: logged in")
        await asyncio.sleep(rng.uniform(0.05, 2.5))
        if done.is_set() and kills >= MIN_KILLS:
            return kills
        await bot.kill()
        kills += 1
        await asyncio.sleep(rng.uniform(0, 0.4))


def _pending(app: App) -> tuple[int, int]:
    with app.db.session() as s:
        inbox = len(s.exec(select(InboxEvent.id).where(InboxEvent.status == "pending")).all())
        outbox = len(
            s.exec(select(OutboxMessage.id).where(OutboxMessage.status == "pending")).all()
        )
    return inbox, outbox


async def typing(citizen: Citizen, lines: list[str], rng: random.Random) -> list[str]:
    """Send lines at a human-ish pace without waiting for the bot (it may be down)."""
    sent = []
    for line in lines:
        response = await send_text(citizen.client, citizen.room_id, line)
        assert isinstance(response, nio.RoomSendResponse), response
        sent.append(response.event_id)
        await asyncio.sleep(rng.uniform(0.02, 0.3))
    return sent


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing_and_posts_nothing_twice(
    synapse: SynapseServer,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    deadline = time.monotonic() + TIMEOUT
    rng = random.Random(int(os.environ.get("PARLONS_CRASH_SEED", "20240917")))
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    app = build_app(Settings(database_url=url))
    app.import_consultation(open_consultation(tmp_path))
    consent = ["/accept"] if "accept" in app.dispatcher.commands else []
    bot_account: MatrixAccount = await matrix_account.create("parlons")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")},
        "PARLONS_CONFIG_FILE": str(_empty_config(tmp_path)),
        "PARLONS_DATABASE_URL": url,
        "PARLONS_LOG_LEVEL": "INFO",
        "PARLONS_MATRIX_HOMESERVER": synapse.url,
        "PARLONS_MATRIX_USER_ID": bot_account.user_id,
        "PARLONS_MATRIX_ACCESS_TOKEN": bot_account.access_token,
        "PARLONS_MATRIX_DEVICE_ID": bot_account.device_id,
        "PARLONS_MATRIX_STORE_PATH": str(tmp_path / "store"),
        "PARLONS_MATRIX_SYNC_TIMEOUT": "2",
        "PARLONS_MATRIX_TIMELINE_LIMIT": "4",  # kills leave gaps: back-fill must close them
        "PARLONS_MATRIX_PACE_PER_SECOND": "200",
        "PARLONS_MATRIX_PACE_ROOM_INTERVAL": "0",
    }
    bot = BotProcess(env, tmp_path, stop_timeout=30)
    done = asyncio.Event()
    chaos_task = asyncio.create_task(chaos(bot, rng, done))
    try:
        # Citizens open their DMs while the bot is being killed: invitations are durable too.
        citizens: list[Citizen] = []
        for n in range(CITIZENS):
            account = await matrix_account.create(f"citizen{n}")
            client = await matrix_clients(account, encryption=n < ENCRYPTED)
            room_id = await create_dm(client, bot_account.user_id, encrypted=n < ENCRYPTED)
            citizens.append(Citizen(app, account, client, room_id, bot_account.user_id))
        for citizen in citizens:
            await wait_joined(citizen.client, citizen.room_id, bot_account.user_id, timeout=90)

        # Phase A: everybody answers both questions (some rewrite their first draft).
        expected_texts: dict[str, list[str]] = {}
        scripts = []
        for n, citizen in enumerate(citizens):
            q1, q2 = f"Q1 de {n} : des lieux <ouverts>", f"Q2 de {n} : le budget"
            lines = ["/start", *consent, "/participate"]
            if n % 3 == 0:
                lines += [f"brouillon {n}", "/edit"]
            lines += [q1, "/confirm", q2, "/confirm"]
            expected_texts[citizen.user_id] = [q1, q2]
            scripts.append(typing(citizen, lines, rng))
        sent_a = await asyncio.gather(*scripts)
        for event_id in (e for batch in sent_a for e in batch):
            await wait_processed(app, event_id, timeout=deadline - time.monotonic())

        with app.db.session() as s:
            rows = s.exec(select(Contribution, CitizenRow).join(CitizenRow)).all()
        author = {c.id: p.platform_user_id for c, p in rows}
        by_user_q = {(p.platform_user_id, c.text[:2]): c.id for c, p in rows}

        # Phase B: typed supports and comments, then reactions and replies on idea messages.
        expected_supports: set[tuple[str, int]] = set()
        expected_comments: Counter[tuple[str, int, str]] = Counter()
        scripts = []
        for n, citizen in enumerate(citizens):
            others = [c for c in citizens if c is not citizen]
            lines = []
            for other in rng.sample(others, 2):
                cid = by_user_q[(other.user_id, "Q1")]
                lines.append(f"/support {cid}")
                expected_supports.add((citizen.user_id, cid))
            cid = by_user_q[(rng.choice(others).user_id, "Q1")]
            text = f"Commentaire tapé de {n} sur #{cid}"
            lines.append(f"/comment {cid} {text}")
            expected_comments[(citizen.user_id, cid, text)] += 1
            scripts.append(typing(citizen, lines, rng))
        sent_b = [e for batch in await asyncio.gather(*scripts) for e in batch]

        undone_pairs: list[tuple[str, str]] = []

        async def react_and_reply(n: int, citizen: Citizen) -> list[str]:
            page: Replies = await citizen.say("/ideas 2 new", timeout=deadline - time.monotonic())
            ideas = [
                (cid, page.about(cid))
                for cid, user in author.items()
                if user != citizen.user_id and f"#{cid} ·" in page.text
            ]
            assert len(ideas) >= 3, page.text
            (liked, liked_msg), (commented, commented_msg), (_undone, undone_msg) = rng.sample(
                ideas, 3
            )
            events = [await citizen.react(liked_msg, "👍", encrypted=n < ENCRYPTED)]
            expected_supports.add((citizen.user_id, liked))
            text = f"Réponse de {n} à #{commented}"
            quoted = "> " + commented_msg.body.split("\n", 1)[0]
            events.append(
                await citizen.send(
                    {
                        "msgtype": "m.text",
                        "body": f"{quoted}\n\n{text}",
                        "m.relates_to": {"m.in_reply_to": {"event_id": commented_msg.event_id}},
                    }
                )
            )
            expected_comments[(citizen.user_id, commented, text)] += 1
            reaction = await citizen.react(undone_msg, "👍")
            await asyncio.sleep(rng.uniform(0, 1.0))
            # A reaction redacted before the bot saw it reaches the bot already redacted (no
            # content): then neither it nor its redaction is an event for the bot.
            undone_pairs.append((reaction, await citizen.redact(reaction)))
            return events

        sent_c = [
            e
            for batch in await asyncio.gather(
                *(react_and_reply(n, c) for n, c in enumerate(citizens))
            )
            for e in batch
        ]
        done.set()
        kills = await asyncio.wait_for(chaos_task, deadline - time.monotonic())
        for event_id in sent_b + sent_c:
            await wait_processed(app, event_id, timeout=deadline - time.monotonic())
        while any(await asyncio.to_thread(_pending, app)):
            assert time.monotonic() < deadline, "the bot did not settle"
            await asyncio.sleep(0.1)
    except (MatrixTimeout, AssertionError) as exc:
        print(bot.tail())
        if chaos_task.done() and not chaos_task.cancelled() and chaos_task.exception():
            raise AssertionError(f"the chaos loop failed: {chaos_task.exception()!r}") from exc
        found = re.search(r"process (\S+)", str(exc))
        event_id = found.group(1) if found else None
        for citizen in citizens if event_id else ():
            got = await citizen.client.room_get_event(citizen.room_id, event_id)
            if isinstance(got, nio.RoomGetEventResponse):
                print("unprocessed event:", citizen.user_id, got.event.source)
        raise
    finally:
        if not chaos_task.done():
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
        if bot.proc is not None and bot.proc.returncode is None:
            await bot.stop()

    assert kills >= MIN_KILLS
    with app.db.session() as s:
        contributions = s.exec(select(Contribution, CitizenRow).join(CitizenRow)).all()
        recorded = Counter((p.platform_user_id, c.text) for c, p in contributions)
        assert recorded == Counter(
            (user, text) for user, texts in expected_texts.items() for text in texts
        )
        supports = s.exec(select(Support, CitizenRow).join(CitizenRow)).all()
        assert {(p.platform_user_id, sup.contribution_id) for sup, p in supports} == (
            expected_supports
        )
        assert len(supports) == len(expected_supports)
        comments = s.exec(select(Comment, CitizenRow).join(CitizenRow)).all()
        assert Counter((p.platform_user_id, c.contribution_id, c.text) for c, p in comments) == (
            expected_comments
        )
        inbox = s.exec(select(InboxEvent).where(InboxEvent.platform == "matrix")).all()
        assert [e.event_key for e in inbox if e.status != "done"] == []
        keys = Counter(e.event_key for e in inbox)
        for event_id in [e for batch in sent_a for e in batch] + sent_b + sent_c:
            assert keys[event_id] == 1, event_id
        for reaction, redaction in undone_pairs:
            assert keys[redaction] <= keys[reaction] <= 1
        outbox = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
        assert {o.status for o in outbox} == {"sent"}
        # Replies of one event were produced by one processing: consecutive outbox ids.
        by_inbox: dict[int, list[int]] = {}
        for o in outbox:
            if o.inbox_id is not None and o.id is not None:
                by_inbox.setdefault(o.inbox_id, []).append(o.id)
        for ids in by_inbox.values():
            assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        state = s.exec(select(ChannelState)).all()
        assert any(row.key.endswith(":next_batch") for row in state)

    # Every reply is in its room exactly once.
    for citizen in citizens:
        await citizen.pump(0)
        timeline = Counter(k.split(".", 1)[0] for k in await timeline_keys(citizen))
        expected = {
            f"out-{o.id}" for o in outbox if o.chat_id == citizen.room_id and o.status == "sent"
        }
        assert set(timeline) == expected, citizen.user_id
        parts = Counter(k for k in await timeline_keys(citizen))
        assert max(parts.values()) == 1, [k for k, v in parts.items() if v > 1]
    app.close()
    print(f"[matrix-crash] {kills} kills, {len(inbox)} events, {len(outbox)} replies")


def _empty_config(tmp_path):  # type: ignore[no-untyped-def]
    """An empty configuration file: the environment alone configures the bot (a missing
    PARLONS_CONFIG_FILE is refused)."""
    path = tmp_path / "none.toml"
    path.write_text("")
    return path
