"""Core throughput: synthetic citizens answer the questions and support contributions through
the whole core (an in-process channel: inbox → dispatcher → services → outbox → marked sent)
on SQLite, against a raw sqlite3 baseline measured in the same run (one transaction that
inserts an inbox row and a support row).

    .venv/bin/python bench/core.py [--citizens 300] [--supports 10] [--synchronous FULL]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

The last line prints both rates and their ratio. With ``--pg``, the same run is also made on a
fresh PostgreSQL database (for information: the baseline is SQLite's).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_app  # noqa: E402
from bot.messages import (  # noqa: E402
    ChatType,
    CommandMessage,
    EventContext,
    InboundEvent,
    Payload,
    TextMessage,
)
from bot.router import Capabilities  # noqa: E402
from bot.settings import Settings  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"
NOW = datetime.fromisoformat("2019-08-19T10:00:00+02:00")
_ids = itertools.count(1)


def event(user: str, payload: Payload) -> InboundEvent:
    return InboundEvent(
        EventContext(
            platform="bench",
            chat_id=user,
            user_id=user,
            event_id=f"e{next(_ids)}",
            language="fr",
            chat_type=ChatType.PRIVATE,
        ),
        payload,
    )


def command(text: str) -> CommandMessage:
    name, *args = text[1:].split()
    return CommandMessage(name, tuple(args), " ".join(args))


def core_run(
    url: str, citizens: int, supports: int, synchronous: str, batch: int
) -> dict[str, float]:
    app = build_app(
        Settings(database_url=url, sqlite_synchronous=synchronous, log_level="WARNING"),
        clock=lambda: NOW,
    )
    app.import_consultation(SEED)
    engine = app.engine
    engine.register_channel("bench", Capabilities(buttons=True, edits=True))

    def deliver(events: list[InboundEvent]) -> None:
        """One batch, as a channel receives them (a getUpdates answer, a sync): recorded and
        processed in one transaction, then the replies are sent and marked sent."""
        for start in range(0, len(events), batch):
            deliveries = engine.handle_many(events[start : start + batch])
            engine.mark_sent_many((d.outbox_id, f"m{d.outbox_id}") for d in deliveries)

    users = [f"u{n}" for n in range(citizens)]

    def script(user: str) -> list[Payload]:
        return [
            # /accept: the privacy notice, accepted before taking part (issue 6).
            command("/start"),
            command("/accept"),
            command("/participate"),
            TextMessage(f"Contribution de {user} à la première question, avec des détails."),
            command("/confirm"),
            TextMessage(f"Une réussite locale racontée par {user}."),
            command("/confirm"),
        ]

    steps = {user: script(user) for user in users}
    started = time.perf_counter()
    participation_events = 0
    for step in range(7):  # everybody's first step, then everybody's second step…
        round_events = [event(user, steps[user][step]) for user in users]
        deliver(round_events)
        participation_events += len(round_events)
    participation_time = time.perf_counter() - started

    rng = random.Random(7)
    contribution_ids = list(range(1, 2 * citizens + 1))
    jobs = []
    for n, user in enumerate(users):
        own = {n + 1, citizens + n + 1}  # their answers to question 1 and question 2
        picks = [c for c in rng.sample(contribution_ids, supports + 2) if c not in own]
        jobs.extend((user, c) for c in picks[:supports])
    rng.shuffle(jobs)
    support_events = [event(user, command(f"/support {cid}")) for user, cid in jobs]
    started = time.perf_counter()
    deliver(support_events)
    support_time = time.perf_counter() - started

    with app.db.session() as s:
        from sqlmodel import func, select

        from storage.models import Contribution, Support

        assert s.exec(select(func.count()).select_from(Support)).one() == len(jobs)
        assert s.exec(select(func.count()).select_from(Contribution)).one() == 2 * citizens
    app.close()
    return {
        "participation_rate": participation_events / participation_time,
        "support_rate": len(jobs) / support_time,
        "supports": len(jobs),
        "events": participation_events + len(jobs),
        "total_time": participation_time + support_time,
    }


def pg_run(admin_dsn: str, citizens: int, supports: int, batch: int) -> dict[str, float]:
    """The same run on a PostgreSQL database of its own, dropped afterwards."""
    import uuid

    import psycopg

    name = f"parlons_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return core_run(f"{admin_dsn.rsplit('/', 1)[0]}/{name}", citizens, supports, "FULL", batch)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raw_run(path: Path, n: int, synchronous: str) -> float:
    """The baseline: raw sqlite3, one transaction per action inserting an inbox row and a
    support row (same journal mode and synchronous setting as the core)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE inbox (id INTEGER PRIMARY KEY, platform TEXT, event_key TEXT, "
        "payload TEXT, UNIQUE(platform, event_key))"
    )
    conn.execute(
        "CREATE TABLE support (id INTEGER PRIMARY KEY, contribution_id INTEGER, "
        "citizen_id INTEGER, created_at TEXT, UNIQUE(contribution_id, citizen_id))"
    )
    started = time.perf_counter()
    for k in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO inbox (platform, event_key, payload) VALUES (?, ?, ?)",
            ("bench", f"e{k}", '{"kind": "command", "name": "support"}'),
        )
        conn.execute(
            "INSERT INTO support (contribution_id, citizen_id, created_at) VALUES (?, ?, ?)",
            (k % 997, k, "2019-08-19T08:00:00"),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=300)
    parser.add_argument("--supports", type=int, default=10)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--pg", default=None, help="also run on PostgreSQL (admin DSN)")
    parser.add_argument(
        "--batch",
        type=int,
        default=25,
        help="events per transaction, as one getUpdates answer or sync brings",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parlons-bench-") as tmp:
        core = core_run(
            f"sqlite:///{Path(tmp) / 'core.sqlite3'}",
            args.citizens,
            args.supports,
            args.synchronous,
            args.batch,
        )
        raw = raw_run(Path(tmp) / "raw.sqlite3", 5000, args.synchronous)
    pg = pg_run(args.pg, args.citizens, args.supports, args.batch) if args.pg else None
    print(
        f"citizens={args.citizens} events={core['events']:.0f} "
        f"supports={core['supports']:.0f} synchronous={args.synchronous} batch={args.batch}"
    )
    print(f"participation (start, answer, confirm…): {core['participation_rate']:.0f} events/s")
    print(f"raw sqlite3 baseline (inbox row + support row): {raw:.0f} actions/s")
    if pg is not None:
        print(
            f"PostgreSQL (for information): participation {pg['participation_rate']:.0f} "
            f"events/s, {pg['support_rate']:.0f} recorded actions/s"
        )
    ratio = core["support_rate"] / raw
    print(
        f"core {core['support_rate']:.0f} recorded actions/s · raw {raw:.0f} actions/s · "
        f"ratio {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
