"""Kill test with several workers: three ``parlons run`` processes share one PostgreSQL database
and one bot token (the Bot API test server). One of them (the current poller half the time) is
killed with SIGKILL every few seconds and restarted, while about 5,000 updates arrive from a few
hundred citizens (contribution flows, then supports and comments).

At the end: every contribution, support and comment exactly once; every update confirmed and
processed; in every chat the replies arrived in the order they were stored; replies sent twice
at most the messages in flight of each killed worker (its chat lanes: several per kill, not
one); the pollers never fought over ``getUpdates`` (a 409 only for a killed poller's orphaned
request); exactly one poller. About two and a half minutes on the 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections import Counter, defaultdict

import aiohttp
import psycopg
import pytest

import tests.test_telegram_crash as crash
from bot.app import build_app
from bot.settings import Settings
from tests.support.bot_api_server import BotApiServer
from tests.support.processes import BotProcess, open_consultation
from tests.support.telegram import consent_command

BOT = "parlons_test_bot"
WORKERS = 3
CITIZENS = 290  # about 17.5 updates each: over 5,000 updates
FEED_RATE = 120.0  # updates a second
TIMEOUT = 600.0


class Pg:
    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def query(self, sql: str) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]

    def pending_inbox(self) -> int:
        return int(self.query("SELECT count(*) FROM inboxevent WHERE status = 'pending'")[0][0])

    def pending_outbox(self) -> int:
        return int(self.query("SELECT count(*) FROM outboxmessage WHERE status = 'pending'")[0][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _feed(server: BotApiServer, steps: list[crash.Step]) -> None:
    for index, (user, lang, kind, value) in enumerate(steps):
        if kind == "msg":
            server.inject_message(user, value, language_code=lang)
        else:
            server.inject_callback(user, value, 1, language_code=lang)
        if index % 20 == 19:
            await asyncio.sleep(20 / FEED_RATE)


async def _health(http: aiohttp.ClientSession, port: int) -> dict | None:
    try:
        async with http.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            return await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _leaders(http: aiohttp.ClientSession, ports: list[int]) -> list[int]:
    found = []
    for i, port in enumerate(ports):
        health = await _health(http, port)
        if health and any(health["leader"].values()):
            found.append(i)
    return found


@pytest.mark.slow
@pytest.mark.postgres
async def test_three_workers_killed_in_turn_lose_nothing_double_nothing_keep_chat_order(
    pg_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(crash, "CITIZENS", CITIZENS)
    started = time.monotonic()
    deadline = started + TIMEOUT
    rng = random.Random(int(os.environ.get("PARLONS_CRASH_SEED", "20261205")))
    setup = build_app(Settings(database_url=pg_url, log_level="WARNING"))
    setup.import_consultation(open_consultation(tmp_path))
    consent = consent_command(setup)
    setup.close()
    db = Pg(pg_url)
    config = tmp_path / "parlons.toml"
    config.write_text("")
    ports = [_free_port() for _ in range(WORKERS)]
    expected: dict[str, object] = {}

    async with BotApiServer(bot_username=BOT) as server, aiohttp.ClientSession() as http:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")}
        base.update(
            PARLONS_DATABASE_URL=pg_url,
            PARLONS_TELEGRAM_TOKEN=server.token,
            PARLONS_TELEGRAM_API_URL=server.base_url,
            PARLONS_TELEGRAM_FILE_URL=server.base_file_url,
            PARLONS_LOG_LEVEL="WARNING",
            PARLONS_CONFIG_FILE=str(config),
            PARLONS_WORKER_LEADER_RETRY="0.5",
            # The test server has no flood limits: pace fast so that the run stays short.
            PARLONS_TELEGRAM_PACE_PER_SECOND="400",
            PARLONS_TELEGRAM_PACE_CHAT_INTERVAL="0.02",
        )
        workers = []
        for i, port in enumerate(ports):
            logs = tmp_path / f"worker-{i}"
            logs.mkdir()
            workers.append(
                BotProcess({**base, "PARLONS_METRICS_LISTEN": f"127.0.0.1:{port}"}, logs)
            )
        for worker in workers:
            await worker.start()
        while not await _leaders(http, ports):
            assert time.monotonic() < deadline, "no worker became the poller"
            await asyncio.sleep(0.1)

        async def settled() -> None:
            while server.pending_updates or db.pending_inbox():
                assert time.monotonic() < deadline, (
                    f"not settled: {len(server.pending_updates)} unconfirmed update(s), "
                    f"{db.pending_inbox()} pending inbox event(s)"
                )
                await asyncio.sleep(0.1)

        async def feeder() -> None:
            steps, expected["contributions"] = crash.phase_a(rng, consent)
            await _feed(server, steps)
            await settled()
            rows = db.query("SELECT id, citizen_id, text FROM contribution")
            citizen_of = dict(db.query("SELECT id, platform_user_id FROM citizen"))
            ids = {text: cid for cid, _citizen, text in rows}
            authors = {cid: int(citizen_of[citizen]) for cid, citizen, _text in rows}
            steps, expected["supports"], expected["comments"] = crash.phase_b(rng, ids, authors)
            print(f"\nphase A settled at {time.monotonic() - started:.1f}s")
            await _feed(server, steps)

        fed = asyncio.ensure_future(feeder())
        kills, leader_kills = 0, 0
        while not fed.done():
            assert time.monotonic() < deadline, "the kill test took too long"
            await asyncio.wait({fed}, timeout=rng.uniform(4.0, 8.0))
            if fed.done():
                break
            leaders = await _leaders(http, ports)
            if kills % 2 == 0 and leaders:
                victim = leaders[0]
                leader_kills += 1
            else:
                victim = rng.randrange(WORKERS)
            await workers[victim].kill()
            kills += 1
            await workers[victim].start()
        await fed
        await settled()
        while db.pending_outbox():
            assert time.monotonic() < deadline, f"{db.pending_outbox()} replies still pending"
            await asyncio.sleep(0.2)
        print(f"all settled at {time.monotonic() - started:.1f}s")
        # Exactly one poller, once things are calm.
        await asyncio.sleep(1.0)
        assert len(await _leaders(http, ports)) == 1
        for worker in workers:
            assert await worker.stop() == 0  # a clean stop on SIGTERM
        conflicts = [c for c in server.calls("getUpdates") if c.status == 409]
        sends = [r for r in server.sent if r.is_send]

    # Effects exactly once.
    expected_contributions = expected["contributions"]
    expected_supports = expected["supports"]
    expected_comments = expected["comments"]
    assert isinstance(expected_contributions, dict)
    assert isinstance(expected_supports, set) and isinstance(expected_comments, Counter)
    citizen_of = dict(db.query("SELECT id, platform_user_id FROM citizen"))
    questions = dict(db.query("SELECT id, position FROM question"))
    got = Counter(
        (int(citizen_of[citizen]), questions[question], text)
        for citizen, question, text in db.query(
            "SELECT citizen_id, question_id, text FROM contribution WHERE status = 'published'"
        )
    )
    want = Counter(
        (user, q, text) for user, items in expected_contributions.items() for q, text in items
    )
    assert got == want
    assert db.query("SELECT count(*) FROM contribution")[0][0] == sum(want.values())
    got_supports = Counter(
        (int(citizen_of[citizen]), cid)
        for citizen, cid in db.query("SELECT citizen_id, contribution_id FROM support")
    )
    assert got_supports == Counter(expected_supports)
    got_comments = Counter(
        (int(citizen_of[citizen]), cid, text)
        for citizen, cid, text in db.query("SELECT citizen_id, contribution_id, text FROM comment")
    )
    assert got_comments == expected_comments
    assert db.query("SELECT count(*) FROM inboxevent WHERE status != 'done'")[0][0] == 0
    updates = len(server.injected)
    assert updates >= 5000, updates

    # Replies: each chat's in the order stored (their Telegram message ids grow with the
    # outbox ids), and sent twice only when a kill caught them between send and settle.
    rows = db.query(
        "SELECT chat_id, platform_message_id FROM outboxmessage "
        "WHERE status = 'sent' AND (message ->> 'edit') IS NULL ORDER BY id"
    )
    per_chat: dict[str, list[int]] = defaultdict(list)
    for chat, message_id in rows:
        per_chat[chat].append(int(message_id))
    disorder = [chat for chat, ids in per_chat.items() if ids != sorted(ids)]
    assert not disorder, f"replies out of order in {len(disorder)} chat(s)"
    assert db.query("SELECT count(*) FROM outboxmessage WHERE status != 'sent'")[0][0] == 0
    # A message Telegram shows that no outbox row recorded as its send is a repeat: a worker
    # killed between a send and its settlement leaves the row to be sent again by another.
    recorded = {
        (str(chat), int(message_id))
        for chat, message_id in db.query(
            "SELECT chat_id, platform_message_id FROM outboxmessage "
            "WHERE platform_message_id IS NOT NULL"
        )
    }
    shown = {(str(r.chat_id), int(r.message_id)) for r in sends if r.message_id is not None}
    repeated = len(shown - recorded)
    # At most the messages a killed worker had in flight (one per chat lane, up to 16).
    assert repeated <= kills * 16, (repeated, kills)
    # Only a killed poller's orphaned getUpdates may be answered 409.
    assert len(conflicts) <= leader_kills + 1, (len(conflicts), leader_kills)
    assert kills >= 8 and leader_kills >= 4, (kills, leader_kills)
    print(
        f"{updates} updates, {kills} SIGKILLs ({leader_kills} of the poller), "
        f"{len(rows)} replies, {repeated} sent twice, {len(conflicts)} getUpdates 409, "
        f"{time.monotonic() - started:.1f}s"
    )
