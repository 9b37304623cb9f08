"""Several workers on PostgreSQL: the 1 → 2 worker speedup, and statements per update.

- **1 → 2 worker speedup**: ``--events`` ordinary updates from ``--chats`` citizens (supports,
  /stats, texts; the citizens onboarded beforehand) wait in the inbox of a fresh PostgreSQL
  database; one worker process, then (on a copy of the same database) two worker processes
  drain it with the real processing path (``Engine.process_many`` over pending ids: the take
  statement with its chat locks). Speedup = time with one ÷ time with two. Sending is paced
  per bot account (shared by the workers by design) and is not part of this figure.
- **statements per update**: the same kind of updates through what ``parlons run`` does for
  each of them — the poller's batch commit to the inbox (``ingest_many``, 100 at a time), the
  processing in batches, then the replies claimed and settled (``bot.delivery`` claims) —
  counted with ``storage.statements`` (SQLAlchemy statements, prepared statements, BEGIN and
  COMMIT), divided by the number of updates.

    .venv/bin/python bench/workers.py [--pg postgresql://postgres@127.0.0.1:5432/postgres]
        [--events 3000] [--chats 300]

The last line prints both figures; ``bench/runtime.py`` appends them to its own last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bot.app import App, build_app  # noqa: E402
from bot.messages import (  # noqa: E402
    ChatType,
    CommandMessage,
    EventContext,
    InboundEvent,
    Payload,
    TextMessage,
)
from bot.settings import Settings  # noqa: E402
from storage.statements import StatementCounter  # noqa: E402

PLATFORM = "bench"
SEED = ROOT / "consultations" / "ville-intelligente.yaml"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
_ids = count(1)


def _clock() -> datetime:
    # Inside the seed consultation (open), whatever today's date.
    return datetime(2019, 8, 19, 8, tzinfo=UTC) + timedelta(seconds=time.monotonic() % 3600)


def event(user: str, payload: Payload) -> InboundEvent:
    return InboundEvent(
        EventContext(
            platform=PLATFORM,
            chat_id=user,
            user_id=user,
            event_id=f"b{uuid.uuid4().hex}",
            language="fr",
            chat_type=ChatType.PRIVATE,
        ),
        payload,
    )


def command(text: str) -> CommandMessage:
    name, *args = text[1:].split()
    return CommandMessage(name, tuple(args), " ".join(args))


def onboard(app: App, chats: list[str]) -> None:
    """Everyone accepts the notice and answers the first question (ideas 1..len(chats))."""
    steps: list[Payload] = [
        command("/start"),
        command("/accept"),
        command("/participate"),
        TextMessage("Une idée de quartier, avec assez de détails pour compter."),
        command("/confirm"),
    ]
    for step in steps:
        for start in range(0, len(chats), 100):
            app.engine.handle_many([event(c, step) for c in chats[start : start + 100]])


def ordinary(chats: list[str], n: int, rng: random.Random) -> list[InboundEvent]:
    """Ordinary updates: mostly supports of other citizens' ideas, some /stats and texts."""
    out = []
    for _ in range(n):
        k = rng.randrange(len(chats))
        roll = rng.random()
        if roll < 0.6:
            target = rng.randrange(len(chats)) + 1
            payload: Payload = command(f"/support {target}")
        elif roll < 0.8:
            payload = command("/stats")
        else:
            payload = TextMessage("merci !")
        out.append(event(chats[k], payload))
    return out


def _pg(admin: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _url(admin: str, name: str) -> str:
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def prepare(admin: str, events: int, chats: int) -> str:
    """A database with ``events`` ordinary updates pending in the inbox (a template)."""
    name = f"parlons_bench_w_{uuid.uuid4().hex[:8]}"
    _pg(admin, f'CREATE DATABASE "{name}"')
    app = build_app(Settings(database_url=_url(admin, name), log_level="WARNING"), clock=_clock)
    app.import_consultation(SEED)
    people = [f"w{n}" for n in range(chats)]
    onboard(app, people)
    batch = ordinary(people, events, random.Random(12))
    for start in range(0, len(batch), 100):
        app.engine.ingest_many(batch[start : start + 100])
    app.close()
    return name


def drain(url: str, batch: int) -> None:
    """One worker process: process pending events until none is left."""
    app = build_app(Settings(database_url=url, log_level="WARNING"), clock=_clock, migrate=False)
    idle = 0
    while idle < 3:
        ids = app.engine.pending(PLATFORM, batch)
        if not ids:
            idle += 1
            time.sleep(0.05)
            continue
        idle = 0
        app.engine.process_many(ids)
    app.close()


def timed_drain(admin: str, template: str, workers: int, batch: int) -> float:
    name = f"{template}_{workers}"
    _pg(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        url = _url(admin, name)
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--drain", url, "--batch", str(batch)], cwd=ROOT
            )
            for _ in range(workers)
        ]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("a worker failed")
        elapsed = time.perf_counter() - started
        import psycopg

        with psycopg.connect(url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM inboxevent WHERE status <> 'done'"
            ).fetchone()
        assert left is not None and left[0] == 0, f"{left} events not done"
        return elapsed
    finally:
        _pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def speedup(admin: str, events: int, chats: int, batch: int = 50) -> tuple[float, float, float]:
    template = prepare(admin, events, chats)
    try:
        one = timed_drain(admin, template, 1, batch)
        two = timed_drain(admin, template, 2, batch)
    finally:
        _pg(admin, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    return one, two, one / two


def statements_per_update(admin: str, events: int, chats: int) -> tuple[float, dict[str, float]]:
    """Round trips per ordinary update along parlons run's path (see the module docstring)."""
    from bot.delivery.claims import OutboxClaims
    from storage.repositories_runtime import Settlement

    name = f"parlons_bench_s_{uuid.uuid4().hex[:8]}"
    _pg(admin, f'CREATE DATABASE "{name}"')
    try:
        app = build_app(
            Settings(database_url=_url(admin, name), log_level="WARNING"), clock=_clock
        )
        app.import_consultation(SEED)
        people = [f"s{n}" for n in range(chats)]
        onboard(app, people)
        claims = OutboxClaims(app.db, worker="bench")
        while batch := claims.claim(PLATFORM, 1000):  # the onboarding's replies: sent
            claims.settle(
                PLATFORM, [Settlement(c.outbox_id, "sent", message_id="1") for c in batch]
            )
        updates = ordinary(people, events, random.Random(34))
        counter = StatementCounter().attach(app.db.engine)
        phases: dict[str, int] = {}
        mark = counter.snapshot().round_trips

        def lap(label: str) -> None:
            nonlocal mark
            now = counter.snapshot().round_trips
            phases[label] = phases.get(label, 0) + now - mark
            mark = now

        for start in range(0, len(updates), 100):
            lap("other")
            app.engine.ingest_many(updates[start : start + 100])
            lap("ingest")
            ids = app.engine.pending(PLATFORM, 100)
            lap("pending")
            app.engine.process_many(ids)
            lap("process")
            claimed = claims.claim(PLATFORM, 1000)
            lap("claim")
            sent = [Settlement(c.outbox_id, "sent", message_id="1") for c in claimed]
            claims.settle(PLATFORM, sent)
            lap("settle")
        phases.pop("other", None)
        counter.detach(app.db.engine)
        app.close()
    finally:
        _pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    per = {k: v / len(updates) for k, v in phases.items()}
    return sum(per.values()), per


async def measure_speedup(args: argparse.Namespace) -> tuple[str, str]:
    admin = getattr(args, "pg", None) or DEFAULT_PG
    admin = admin.replace("postgresql+psycopg://", "postgresql://")
    one, two, ratio = await asyncio.to_thread(speedup, admin, 2000, 200)
    return "1→2 workers (PostgreSQL)", f"{ratio:.2f}× ({one:.1f}s → {two:.1f}s)"


async def measure_statements(args: argparse.Namespace) -> tuple[str, str]:
    admin = getattr(args, "pg", None) or DEFAULT_PG
    admin = admin.replace("postgresql+psycopg://", "postgresql://")
    total, _per = await asyncio.to_thread(statements_per_update, admin, 1000, 200)
    return "statements/update", f"{total:.1f}"


MEASURES = [measure_speedup, measure_statements]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--drain", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain(args.drain, args.batch)
        return
    total, per = statements_per_update(args.pg, min(args.events, 1500), args.chats)
    print("statements per update:", json.dumps({k: round(v, 2) for k, v in per.items()}))
    one, two, ratio = speedup(args.pg, args.events, args.chats, args.batch)
    print(f"drain {args.events} updates: 1 worker {one:.1f}s, 2 workers {two:.1f}s")
    print(f"workers: 1→2 speedup {ratio:.2f}× | statements/update {total:.1f}")


if __name__ == "__main__":
    main()
