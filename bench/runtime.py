"""The delivery runtime (``bot.delivery``) under load, with the real claims, lanes, pacer and
settlements on a real database, and a channel that answers after a simulated API latency.

Figures (the last line prints them all):

- **reply rate ÷ configured** at 0, 50 and 100 ms of API latency: ``--replies`` replies to
  ``--chats`` chats, sent at the configured pace (``--rate``, 25/s: below Telegram's 30/s); the
  achieved rate is measured between the first and the last send.
- **p99 other-chat latency under a flood**: one citizen's ``--flood`` replies are pending (their
  chat paced at 1 message a second, as Telegram wants), while ``--others`` other citizens get a
  reply each, one every 50 ms; latency = send time − the time the reply was stored. A serial
  queue (the sender before the runtime) is measured in the same run as the baseline.
- **duplicates sent**: two reply senders (two workers) on one database (``--pg URL``: that
  PostgreSQL database; by default a SQLite file) share ``--replies`` replies; any outbox key
  sent twice is a duplicate.

More figures (e.g. the 1 → 2 worker speedup on PostgreSQL) plug in through ``EXTRA``: a list of
``async (args) -> (label, text)`` measurements, whose results are appended to the last line.

    .venv/bin/python bench/runtime.py [--rate 25] [--replies 250] [--flood 500] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bot.app import App, build_app  # noqa: E402
from bot.channels import Pace, Sent  # noqa: E402
from bot.delivery import OutboxSender  # noqa: E402
from bot.messages import OutboundMessage, RichText  # noqa: E402
from bot.router import Capabilities  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.repositories import Repos  # noqa: E402

PLATFORM = "bench"
# Extra measurements: async (args) -> (label, text), appended to the last line.
EXTRA: list[Callable[[argparse.Namespace], Awaitable[tuple[str, str]]]] = []


class LatencyChannel:
    platform = PLATFORM
    capabilities = Capabilities()

    def __init__(self, latency: float, log: list[tuple[float, str, str]]) -> None:
        self.latency, self.log = latency, log

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.log.append((time.monotonic(), key, message.chat_id))
        return Sent(key)


def new_app(url: str | None, tmp: str, name: str) -> App:
    db_url = url or f"sqlite:///{tmp}/{name}.db"
    app = build_app(Settings(database_url=db_url))
    app.db.upgrade()
    return app


def store(app: App, chats: list[str]) -> dict[int, float]:
    """Store one reply per entry of ``chats``; their outbox ids → stored at (monotonic)."""
    now = datetime.now(UTC)
    with app.db.session() as session:
        ids = Repos(app.db, session).outbox.add_many(
            [
                {
                    "platform": PLATFORM,
                    "chat_id": chat,
                    "inbox_id": None,
                    "message": OutboundMessage(chat, RichText().p("reply")).to_json(),
                    "created_at": now,
                }
                for chat in chats
            ]
        )
    at = time.monotonic()
    return dict.fromkeys(ids, at)


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def reply_rate(args: argparse.Namespace, tmp: str, latency: float) -> float:
    app = new_app(None, tmp, f"rate{int(latency * 1000)}")
    runtime = Runtime(app)
    log: list[tuple[float, str, str]] = []
    pace = Pace(per_second=args.rate, per_chat_interval=1.0)
    sender = OutboxSender(runtime, LatencyChannel(latency, log), pace)  # type: ignore[arg-type]
    stop = asyncio.Event()
    try:
        store(app, [f"c{n % args.chats}" for n in range(args.replies)])
        task = asyncio.create_task(sender.run(stop))
        await until(lambda: len(log) >= args.replies, 600)
        stop.set()
        await task
    finally:
        runtime.close()
        app.close()
    stamps = sorted(t for t, _k, _c in log)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) / args.rate


class SerialSender:
    """The baseline: one queue, one message at a time, oldest first (the sender before the
    runtime), with the same per-chat spacing."""

    def __init__(self, app: App, channel: LatencyChannel, pace: Pace) -> None:
        self.app, self.channel, self.pace = app, channel, pace
        self.next_chat: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        sent: set[int] = set()
        while not stop.is_set():
            with self.app.db.session() as session:
                rows = [
                    r
                    for r in Repos(self.app.db, session).outbox.pending(PLATFORM, 1000)
                    if r.id not in sent
                ]
            if not rows:
                await asyncio.sleep(0.01)
                continue
            for row in rows:
                if stop.is_set():
                    return
                assert row.id is not None
                wait = self.next_chat.get(row.chat_id, 0.0) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await asyncio.sleep(1 / self.pace.per_second)
                message = OutboundMessage.from_json(row.message)
                await self.channel.send(message, key=f"out-{row.id}")
                self.next_chat[row.chat_id] = time.monotonic() + self.pace.per_chat_interval
                sent.add(row.id)
                with self.app.db.session() as session:
                    Repos(self.app.db, session).outbox.mark(row.id, "sent", datetime.now(UTC))


async def flood_latency(args: argparse.Namespace, tmp: str, serial: bool) -> float:
    """p99 latency (s) of other citizens' replies while one citizen's flood is pending."""
    app = new_app(None, tmp, "serial" if serial else "flood")
    runtime = Runtime(app)
    log: list[tuple[float, str, str]] = []
    pace = Pace(per_second=args.rate, per_chat_interval=1.0)
    channel = LatencyChannel(0.05, log)
    sender: Any = (
        SerialSender(app, channel, pace) if serial else OutboxSender(runtime, channel, pace)  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    stored: dict[int, float] = {}
    try:
        store(app, ["flooder"] * args.flood)
        task = asyncio.create_task(sender.run(stop))
        for n in range(args.others):
            stored.update(store(app, [f"other{n}"]))
            if not serial:
                sender.wake.set()
            await asyncio.sleep(0.05)
        keys = {f"out-{i}" for i in stored}
        timeout = args.baseline_timeout if serial else args.timeout
        await until(lambda: keys <= {k for _t, k, _c in log}, timeout)
        stop.set()
        await task
    finally:
        runtime.close()
        app.close()
    sent_at = {k: t for t, k, _c in log}
    latencies = sorted(sent_at.get(f"out-{i}", time.monotonic()) - at for i, at in stored.items())
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


async def duplicates(args: argparse.Namespace, tmp: str) -> tuple[int, int]:
    """Two senders (two workers) on one database: (duplicates, replies)."""
    apps = [new_app(args.pg, tmp, "two") for _ in range(2)]
    runtimes = [Runtime(app) for app in apps]
    log: list[tuple[float, str, str]] = []
    pace = Pace(per_second=1000.0, per_chat_interval=0.0)
    senders = [
        OutboxSender(rt, LatencyChannel(0.005, log), pace)  # type: ignore[arg-type]
        for rt in runtimes
    ]
    stop = asyncio.Event()
    try:
        tasks = [asyncio.create_task(s.run(stop, idle=0.05)) for s in senders]
        total = 0
        for start in range(0, args.replies * 4, 100):
            store(apps[0], [f"c{n % args.chats}" for n in range(start, start + 100)])
            total += 100
            await asyncio.sleep(0.02)
        await until(lambda: len({k for _t, k, _c in log}) >= total, 120)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for rt in runtimes:
            rt.close()
        for app in apps:
            app.close()
    counts = Counter(k for _t, k, _c in log)
    return sum(n - 1 for n in counts.values()), total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--replies", type=int, default=250)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--flood", type=int, default=500)
    parser.add_argument("--others", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--baseline-timeout", type=float, default=20.0)
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL for the two-worker run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for latency in (0.0, 0.05, 0.1):
            rates[latency] = await reply_rate(args, tmp, latency)
            print(f"reply rate at {latency * 1000:.0f} ms: {rates[latency]:.3f} × {args.rate}/s")
        p99 = await flood_latency(args, tmp, serial=False)
        print(f"p99 other-chat latency under a {args.flood}-message flood: {p99:.3f} s")
        p99_serial = await flood_latency(args, tmp, serial=True)
        cut = " (cut off: at least)" if p99_serial >= args.baseline_timeout else ""
        print(f"  baseline, one serial queue: {p99_serial:.3f} s{cut}")
        dups, total = await duplicates(args, tmp)
        print(f"duplicates with two workers: {dups} of {total}")
        extra = [await measure(args) for measure in EXTRA]
    figures = [
        "rate/configured " + " ".join(f"{int(k * 1000)}ms={v:.2f}" for k, v in rates.items()),
        f"p99 other-chat {p99:.2f}s under a {args.flood}-flood (serial queue"
        f" {'>=' if cut else ''}{p99_serial:.1f}s)",
        f"duplicates {dups}/{total}",
        *(f"{label} {text}" for label, text in extra),
    ]
    print("runtime: " + " | ".join(figures))


def _workers_extra() -> None:
    """bench/workers.py: the 1 → 2 worker speedup on PostgreSQL and statements per update."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_workers", ROOT / "bench" / "workers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    EXTRA.extend(module.MEASURES)


if __name__ == "__main__":
    _workers_extra()
    asyncio.run(main())
