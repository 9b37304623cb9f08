"""Crash test: the bot runs as a real process (``parlons run``) against the Bot API test server
and is killed with SIGKILL at random moments while the server feeds it a few thousand updates
from many citizens (contribution flows, supports, comments). It is restarted each time. At the
end every contribution, support and comment is recorded exactly once.

The kills land anywhere: during start-up, while a batch is being committed to the inbox, while
events are processed, while replies are sent. What makes this pass: updates are confirmed to
Telegram only after the inbox commit, and an event's effect commits with its inbox status.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.app import build_app
from bot.settings import Settings
from tests.support.bot_api_server import BotApiServer
from tests.support.processes import BotProcess, open_consultation
from tests.support.telegram import consent_command

BOT = "parlons_test_bot"
CITIZENS = 140
FIRST_USER = 50_000
KILLS_PER_PHASE = 7  # kills while contributions arrive, and as many for supports/comments
FEED_RATE = 80.0  # updates a second: the feed spans many kill-restart cycles
TIMEOUT = 150.0


class Db:
    """Read-only looks at the bot's SQLite database (WAL: readers never block the writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def pending_inbox(self) -> int:
        return int(self.query("SELECT count(*) FROM inboxevent WHERE status = 'pending'")[0][0])


Step = tuple[int, str, str, str]  # (user, language, "msg" | "cb", text or callback data)


def phase_a(
    rng: random.Random, consent: str | None
) -> tuple[list[Step], dict[int, list[tuple[int, str]]]]:
    """Every citizen answers the questions (some rewrite a draft, some skip question 2).
    Returns the steps and what must be recorded: user → [(question index, text)]."""
    expected: dict[int, list[tuple[int, str]]] = {}
    flows = []
    for n in range(CITIZENS):
        user = FIRST_USER + n
        lang = "fr" if n % 3 else "en"
        source = "-affiche" if n % 4 == 0 else ""
        steps: list[tuple[str, str]] = [("msg", f"/start ville-intelligente{source}")]
        if consent:  # the privacy notice, accepted
            steps.append(("msg", consent))
        steps.append(("msg", "/participate"))
        texts: list[tuple[int, str]] = []
        if n % 5 == 0:  # a draft rewritten before confirming: only the new text counts
            steps += [("msg", f"brouillon {user}"), ("cb", "redo")]
        steps += [("msg", f"Q1 de {user} : des lieux <ouverts> & vivants"), ("cb", "ok")]
        texts.append((0, f"Q1 de {user} : des lieux <ouverts> & vivants"))
        if n % 7 == 0:
            steps.append(("cb", "skip"))
        else:
            steps += [("msg", f"Q2 de {user} : le budget participatif"), ("cb", "ok")]
            texts.append((1, f"Q2 de {user} : le budget participatif"))
        expected[user] = texts
        flows.append((user, lang, steps))
    return _interleave(flows, rng), expected


def phase_b(
    rng: random.Random, ids: dict[str, int], authors: dict[int, int]
) -> tuple[list[Step], set[tuple[int, int]], Counter[tuple[int, int, str]]]:
    """Supports (buttons and typed, a few pressed twice) and comments (one step and two steps).
    Returns the steps, the expected supports and the expected comments."""
    contribution_ids = sorted(ids.values())
    supports: set[tuple[int, int]] = set()
    comments: Counter[tuple[int, int, str]] = Counter()
    flows = []
    for n in range(CITIZENS):
        user = FIRST_USER + n
        lang = "fr" if n % 3 else "en"
        others = [c for c in contribution_ids if authors[c] != user]
        steps: list[tuple[str, str]] = []
        for k, cid in enumerate(rng.sample(others, 6)):
            steps.append(("cb", f"sup:{cid}") if k < 4 else ("msg", f"/support {cid}"))
            supports.add((user, cid))
            if k == 0 and n % 6 == 0:
                steps.append(("cb", f"sup:{cid}"))  # pressed twice: still one support
        for k, cid in enumerate(rng.sample(others, 3)):
            text = f"Commentaire {k} de {user} sur #{cid}"
            if k < 2:
                steps.append(("msg", f"/comment {cid} {text}"))
            else:
                steps += [("cb", f"com:{cid}"), ("msg", text)]
            comments[(user, cid, text)] += 1
        flows.append((user, lang, steps))
    return _interleave(flows, rng), supports, comments


def _interleave(flows: list, rng: random.Random) -> list[Step]:
    """The citizens' steps interleaved at random, each citizen's in order."""
    cursors = {user: 0 for user, _lang, _steps in flows}
    by_user = {user: (lang, steps) for user, lang, steps in flows}
    out: list[Step] = []
    while cursors:
        user = rng.choice(list(cursors))
        lang, steps = by_user[user]
        kind, value = steps[cursors[user]]
        out.append((user, lang, kind, value))
        cursors[user] += 1
        if cursors[user] == len(steps):
            del cursors[user]
    return out


async def feed(server: BotApiServer, steps: list[Step]) -> None:
    """Inject the steps at a steady rate, whether the bot is up or down."""
    for index, (user, lang, kind, value) in enumerate(steps):
        if kind == "msg":
            server.inject_message(user, value, language_code=lang)
        else:
            # The message id does not matter to these actions; an unknown one is made up.
            server.inject_callback(user, value, 1, language_code=lang)
        if index % 20 == 19:
            await asyncio.sleep(20 / FEED_RATE)


async def chaos(
    server: BotApiServer,
    bot: BotProcess,
    db: Db,
    rng: random.Random,
    fed: asyncio.Task[object],
    phase: dict[str, str],
    deadline: float,
) -> tuple[int, int]:
    """Keep the bot running, and kill it at random moments once it is receiving: up to
    KILLS_PER_PHASE times in each phase of the feed, then let it work until the next phase.
    Returns (kills, kills that hit pending work)."""
    kills: Counter[str] = Counter()
    busy = 0
    while True:
        assert time.monotonic() < deadline, "the crash test took too long"
        if bot.proc is None or bot.proc.returncode is not None:
            polls = len(server.calls("getUpdates"))
            await bot.start()
            # Wait until this process is receiving (so kills hit real work, not start-up).
            while len(server.calls("getUpdates")) == polls and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        current = phase["name"]
        if kills[current] >= KILLS_PER_PHASE:
            if fed.done():
                return sum(kills.values()), busy
            await asyncio.sleep(0.1)  # let it work until the next phase
            continue
        await asyncio.sleep(rng.uniform(0.05, 0.6))  # a random moment
        # Aim at work in progress: the bot drains a burst of the feed in a few milliseconds,
        # so wait for the next burst to arrive and strike a random instant into it.
        until = time.monotonic() + 1.0
        while not server.pending_updates and not fed.done() and time.monotonic() < until:
            await asyncio.sleep(0.002)
        if server.pending_updates:
            await asyncio.sleep(rng.uniform(0.0, 0.02))
        pending = bool(server.pending_updates) or db.pending_inbox() > 0
        if fed.done() and not pending:
            return sum(kills.values()), busy  # all done: leave it running
        await bot.kill()
        kills[current] += 1
        busy += pending


async def settled(server: BotApiServer, db: Db, deadline: float) -> None:
    while server.pending_updates or db.pending_inbox():
        assert time.monotonic() < deadline, (
            f"not settled: {len(server.pending_updates)} unconfirmed update(s), "
            f"{db.pending_inbox()} pending inbox event(s)"
        )
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice(tmp_path):
    started = time.monotonic()
    deadline = started + TIMEOUT
    rng = random.Random(int(os.environ.get("PARLONS_CRASH_SEED", "20240917")))
    db_path = tmp_path / "bot.sqlite3"
    url = f"sqlite:///{db_path}"
    setup = build_app(Settings(database_url=url))
    setup.import_consultation(open_consultation(tmp_path))
    consent = consent_command(setup)
    setup.close()
    db = Db(db_path)
    expected: dict[str, object] = {}

    async with BotApiServer(bot_username=BOT) as server:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PARLONS_")}
        env.update(
            PARLONS_DATABASE_URL=url,
            PARLONS_TELEGRAM_TOKEN=server.token,
            PARLONS_TELEGRAM_API_URL=server.base_url,
            PARLONS_TELEGRAM_FILE_URL=server.base_file_url,
            PARLONS_LOG_LEVEL="WARNING",
            PARLONS_CONFIG_FILE=str(_empty_config(tmp_path)),
        )
        bot = BotProcess(env, tmp_path)

        phase = {"name": "contributions"}

        async def feeder() -> None:
            steps, expected["contributions"] = phase_a(rng, consent)
            await feed(server, steps)
            # Supports and comments need the contributions' numbers: wait for phase A.
            await settled(server, db, deadline)
            rows = db.query("SELECT id, citizen_id, text FROM contribution")
            citizen_of = dict(db.query("SELECT id, platform_user_id FROM citizen"))
            ids = {text: cid for cid, _citizen, text in rows}
            authors = {cid: int(citizen_of[citizen]) for cid, citizen, _text in rows}
            steps, expected["supports"], expected["comments"] = phase_b(rng, ids, authors)
            print(f"\nphase A settled at {time.monotonic() - started:.1f}s")
            phase["name"] = "supports and comments"
            await feed(server, steps)

        fed = asyncio.ensure_future(feeder())
        kills, busy = await chaos(server, bot, db, rng, fed, phase, deadline)
        await fed
        await settled(server, db, deadline)
        print(f"all settled at {time.monotonic() - started:.1f}s")
        assert await bot.stop() == 0  # a clean stop on SIGTERM

    expected_contributions = expected["contributions"]
    expected_supports = expected["supports"]
    expected_comments = expected["comments"]
    assert isinstance(expected_contributions, dict)
    assert isinstance(expected_supports, set) and isinstance(expected_comments, Counter)
    citizen_of = dict(db.query("SELECT id, platform_user_id FROM citizen"))
    # Every contribution exactly once, with the right author and question.
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
    # Every support once (the constraint makes a double impossible; none may be missing).
    got_supports = Counter(
        (int(citizen_of[citizen]), cid)
        for citizen, cid in db.query("SELECT citizen_id, contribution_id FROM support")
    )
    assert got_supports == Counter(expected_supports)
    # Every comment exactly once (nothing but the inbox prevents a double here).
    got_comments = Counter(
        (int(citizen_of[citizen]), cid, text)
        for citizen, cid, text in db.query("SELECT citizen_id, contribution_id, text FROM comment")
    )
    assert got_comments == expected_comments
    # Nothing failed, nothing left; the visits counted their source once.
    assert db.query("SELECT count(*) FROM inboxevent WHERE status != 'done'")[0][0] == 0
    assert db.query("SELECT count(*) FROM visit WHERE source = 'affiche'")[0][0] == len(
        range(0, CITIZENS, 4)
    )
    updates = len(server.injected)
    assert updates >= 2000
    assert kills >= 10 and busy >= 6, f"{kills} kills ({busy} with work pending): too few"
    elapsed = time.monotonic() - started
    print(f"{updates} updates, {kills} SIGKILLs ({busy} with work pending), {bot.starts} starts")
    print(f"{elapsed:.1f}s")


def _empty_config(tmp_path):  # type: ignore[no-untyped-def]
    """An empty configuration file: the environment alone configures the bot (a missing
    PARLONS_CONFIG_FILE is refused)."""
    path = tmp_path / "none.toml"
    path.write_text("")
    return path
