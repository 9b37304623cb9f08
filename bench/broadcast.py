"""Broadcast throughput against a Bot API server that enforces Telegram's limits.

100,000 subscribers get one announcement through the scheduler's broadcast lane
(``scheduler.sender.BroadcastSender``: the outbox rows on SQLite, the pacer, the Telegram
adapter's ``TelegramChannel`` with python-telegram-bot) against ``tests/support/bot_api_server``
in rate-limit mode (30/s overall, 1/s per chat with bursts of 3, 20/min per group), run in its
own process. Time is compressed by ``--scale`` on both sides: the server's limits and our pace
are ``scale`` times Telegram's, so the run takes minutes instead of an hour.

In the same run, a naive sender (every message at once, 32 in flight, no pacing) sends to
``--naive`` recipients, for comparison.

    .venv/bin/python bench/broadcast.py [--recipients 100000] [--scale 10] [--naive 20000]

Goals: achieved rate ≥ 0.9 × the configured rate, and no 429.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/telegram.py (another benchmark) must not shadow python-telegram-bot.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PTB_TIMEDELTA", "true")

SERVER = """
import asyncio, json, sys
sys.path.insert(0, {root!r})
from tests.support.bot_api_server import BotApiServer, RateLimits

async def main():
    server = BotApiServer(rate_limits=RateLimits(time_scale={scale}), control_api=True)
    await server.start()
    print(json.dumps({{"base_url": server.base_url, "token": server.token, "url": server.url}}),
          flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_server(scale: float) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), scale=scale)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def server_state(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/_test/state") as response:
        return json.loads(response.read())["result"]["stats"]  # type: ignore[no-any-return]


def responses(url: str) -> dict[str, int]:
    return dict(server_state(url)["responses"])  # type: ignore[arg-type]


def prepare(db_path: Path, recipients: int) -> tuple[object, int]:
    from bot.app import build_app
    from bot.broadcasts import BroadcastService
    from bot.services import Services
    from bot.settings import Settings
    from storage.repositories import Repos
    from tests.support.scheduling import add_subscribers

    app = build_app(Settings(database_url=f"sqlite:///{db_path}", log_level="WARNING"))
    app.import_consultation(ROOT / "consultations" / "ville-intelligente.yaml")
    started = time.perf_counter()
    # Telegram private chat ids are the users' numeric ids.
    add_subscribers(app, 1, recipients, platform="telegram", prefix="7", locale="fr")
    with app.db.session() as session:
        repos = Repos(app.db, session)
        info = Services(repos, app.clock()).consultations.by_slug("ville-intelligente")
        broadcast_id = BroadcastService(repos, app.clock()).announcement(
            info, {"fr": "La réunion publique a lieu jeudi à 18 h, salle du conseil."}
        )
    print(
        f"prepared {recipients:,} subscribers and their outbox rows in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return app, broadcast_id


async def paced(app: object, info: dict[str, str], scale: float) -> tuple[int, float, int]:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from adapters.telegram.channel import TelegramChannel
    from bot.broadcasts import BroadcastOutbox
    from bot.channels import Pace
    from bot.runtime import Runtime
    from scheduler.sender import BroadcastSender

    pace = Pace(
        per_second=25 * scale, per_chat_interval=1 / scale, per_group_per_minute=20 * scale
    )
    bot = Bot(
        info["token"], base_url=info["base_url"], request=HTTPXRequest(connection_pool_size=4)
    )
    runtime = Runtime(app)  # type: ignore[arg-type]
    async with bot:
        channel = TelegramChannel(bot, pace)
        outbox = BroadcastOutbox(app.db, app.clock)  # type: ignore[attr-defined]
        sender = BroadcastSender(runtime, channel, outbox, pace, batch=1000)
        started = time.perf_counter()
        sent = await sender.flush()
        elapsed = time.perf_counter() - started
    runtime.close()
    return sent, elapsed, sender.stats.throttled


async def naive(info: dict[str, str], count: int) -> tuple[int, float, int]:
    from telegram import Bot
    from telegram.constants import ParseMode
    from telegram.error import RetryAfter
    from telegram.request import HTTPXRequest

    bot = Bot(
        info["token"], base_url=info["base_url"], request=HTTPXRequest(connection_pool_size=32)
    )
    ok = throttled = 0
    semaphore = asyncio.Semaphore(32)

    async def one(chat_id: int) -> None:
        nonlocal ok, throttled
        async with semaphore:
            try:
                await bot.send_message(
                    chat_id, "<b>Réunion publique</b> jeudi", parse_mode=ParseMode.HTML
                )
                ok += 1
            except RetryAfter:
                throttled += 1

    async with bot:
        started = time.perf_counter()
        await asyncio.gather(*(one(900_000_000 + i) for i in range(count)))
        elapsed = time.perf_counter() - started
    return ok, elapsed, throttled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=10.0, help="time compression")
    parser.add_argument("--naive", type=int, default=20_000, help="recipients of the naive run")
    args = parser.parse_args()

    configured = 25 * args.scale
    print(
        f"Telegram limits ×{args.scale:g}: server allows {30 * args.scale:,.0f}/s overall; "
        f"our pace {configured:,.0f}/s (25/s in Telegram time)"
    )
    with tempfile.TemporaryDirectory(prefix="parlons-bench-") as tmp:
        app, _broadcast_id = prepare(Path(tmp) / "bench.sqlite3", args.recipients)
        proc, info = start_server(args.scale)
        try:
            sent, elapsed, throttled = asyncio.run(paced(app, info, args.scale))
            after_paced = responses(info["url"])
            server_429 = int(after_paced.get("429", 0))
            rate = sent / elapsed
            print(
                f"paced : {sent:,} messages in {elapsed:.1f} s = {rate:,.0f}/s "
                f"({rate / configured:.2f} of the configured {configured:,.0f}/s; "
                f"{rate / args.scale:.1f}/s in Telegram time); 429 answers: {server_429} "
                f"(client saw {throttled})"
            )
            if args.naive:
                ok, n_elapsed, _n_throttled = asyncio.run(naive(info, args.naive))
                naive_429 = int(responses(info["url"]).get("429", 0)) - server_429
                print(
                    f"naive : {args.naive:,} attempts in {n_elapsed:.1f} s: {ok:,} delivered "
                    f"({ok / n_elapsed:,.0f}/s), 429 answers: {naive_429} "
                    f"({naive_429 / args.naive:.0%} of attempts)"
                )
        finally:
            proc.terminate()
            proc.wait()
            app.close()  # type: ignore[attr-defined]
    verdict = "OK" if rate >= 0.9 * configured and server_429 == 0 else "BELOW GOAL"
    print(
        f"result: paced {rate / configured:.2f}× configured (goal ≥ 0.90), 429: {server_429} "
        f"(goal 0) → {verdict}"
    )


if __name__ == "__main__":
    main()
