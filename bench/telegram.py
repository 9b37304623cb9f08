"""Telegram throughput: updates per second through the adapter and the core, against the Bot API
test server, with python-telegram-bot's own ``Update.de_json`` parsing rate measured in the same
run as the baseline.

The test server runs in its own process (``python -m tests.support.bot_api_server``) so it does
not share the bot's interpreter. Synthetic citizens' updates (contribution flows with preview and
confirmation buttons, supports with buttons, statistics, idea pages) are queued on the server;
then the real Telegram service starts (polling, python-telegram-bot over HTTP, SQLite) and the
clock runs until every update is processed, and until every reply is sent. Pacing is off: it is
a policy (about 30 messages a second on real Telegram), not a capacity.

    .venv/bin/python bench/telegram.py [--citizens 150] [--database-url URL]

The last line prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the library: keep its folder off the path so `telegram` is the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlmodel import func, select  # noqa: E402
from telegram import Bot, Update  # noqa: E402

from adapters.telegram.service import TelegramService  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.channels import Pace  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.models import InboxEvent, OutboxMessage  # noqa: E402
from tests.support.harness import FakeClock  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"
NOW = "2019-08-19T10:00:00+02:00"  # inside the seed consultation
TOKEN = "424242:BENCH"
UNPACED = Pace(per_second=1e6, per_chat_interval=0.0, per_group_per_minute=1e6)


class TestServer:
    """The Bot API test server in a child process, driven through its control API."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.bot_api_server", "--token", TOKEN],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.base_url: str = ready["base_url"]
        self.base_file_url: str = ready["base_file_url"]
        self.control = f"http://127.0.0.1:{ready['port']}/_test/"

    async def call(self, http: aiohttp.ClientSession, action: str, **body: Any) -> Any:
        async with http.post(self.control + action, json=body) as response:
            answer = await response.json()
        if not answer.get("ok"):
            raise RuntimeError(f"{action}: {answer}")
        return answer["result"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def workload(citizens: int, consent: str | None, rng: random.Random) -> list[dict[str, Any]]:
    """Each citizen: /start, (consent), /participate, two contributions with preview and a
    confirmation button, /stats, a page of ideas, and three supports with buttons."""
    flows: list[list[dict[str, Any]]] = []
    for n in range(citizens):
        user = 700_000 + n
        lang = "fr" if n % 2 else "en"

        def msg(text: str, user: int = user, lang: str = lang) -> dict[str, Any]:
            return {"action": "inject_message", "user_id": user, "text": text,
                    "language_code": lang}  # fmt: skip

        def press(data: str, user: int = user, lang: str = lang) -> dict[str, Any]:
            return {"action": "inject_callback", "user_id": user, "data": data, "message_id": 1,
                    "language_code": lang}  # fmt: skip

        steps = [msg("/start ville-intelligente-bench")]
        if consent:
            steps.append(msg(consent))
        steps += [
            msg("/participate"),
            msg(f"Idée {n} : un lieu ouvert chaque samedi, avec des ateliers."),
            press("ok"),
            msg(f"Réussite {n} : le budget participatif de 2018."),
            press("ok"),
            msg("/stats"),
            msg("/ideas 1 top"),
        ]
        flows.append(steps)
    # Supports come last, on contributions that exist by then (ids 1..2×citizens).
    supports = []
    for n in range(citizens):
        user, lang = 700_000 + n, ("fr" if n % 2 else "en")
        for cid in rng.sample(range(1, 2 * citizens + 1), 3):
            supports.append({"action": "inject_callback", "user_id": user, "data": f"sup:{cid}",
                             "message_id": 1, "language_code": lang})  # fmt: skip
    # Interleave the citizens, each citizen's steps in order.
    cursors = [0] * len(flows)
    live = list(range(len(flows)))
    out: list[dict[str, Any]] = []
    while live:
        index = rng.choice(live)
        out.append(flows[index][cursors[index]])
        cursors[index] += 1
        if cursors[index] == len(flows[index]):
            live.remove(index)
    return out + supports


def counts(app: Any) -> tuple[int, int]:
    with app.db.session() as s:
        inbox = s.exec(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.status == "pending")
        ).one()
        outbox = s.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == "pending")
        ).one()
    return int(inbox), int(outbox)


def de_json_rate(updates: list[dict[str, Any]], rounds: int = 5) -> float:
    """Updates parsed per second by python-telegram-bot alone (best of ``rounds``)."""
    bot = Bot(TOKEN)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for data in updates:
            Update.de_json(data, bot)
        best = min(best, time.perf_counter() - start)
    return len(updates) / best


async def run(citizens: int, database_url: str | None, tmp: Path) -> dict[str, float]:
    url = database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    app = build_app(Settings(database_url=url, log_level="WARNING"), clock=FakeClock(_now()))
    app.import_consultation(SEED)
    consent = "/accept" if "accept" in app.dispatcher.commands else None
    server = TestServer()
    try:
        async with aiohttp.ClientSession() as http:
            steps = workload(citizens, consent, random.Random(7))
            for step in steps:
                body = dict(step)
                await server.call(http, body.pop("action"), **body)
            state = await server.call(http, "state")
            updates: list[dict[str, Any]] = state["pending_updates"]
            assert len(updates) == len(steps)

            runtime = Runtime(app)
            service = TelegramService(
                app,
                runtime,
                token=TOKEN,
                api_url=server.base_url,
                file_url=server.base_file_url,
                pace=UNPACED,
                poll_timeout=2.0,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            await asyncio.wait_for(service.ready.wait(), 30)
            start = time.perf_counter()
            processed_at = None
            while True:
                inbox, outbox = counts(app)
                pending = (await server.call(http, "state"))["pending_updates"]
                if processed_at is None and not pending and inbox == 0:
                    processed_at = time.perf_counter()
                if processed_at is not None and outbox == 0:
                    break
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            delivered_at = time.perf_counter()
            sent = len(await server.call(http, "sent"))
            stop.set()
            await task
            runtime.close()
    finally:
        server.close()
        app.close()
    return {
        "updates": len(updates),
        "processed_s": processed_at - start,
        "delivered_s": delivered_at - start,
        "messages": sent,
        "de_json": de_json_rate(updates),
    }


def _now() -> Any:
    from datetime import datetime

    return datetime.fromisoformat(NOW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=150)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parlons-bench-") as tmp:
        r = asyncio.run(run(args.citizens, args.database_url, Path(tmp)))
    processed = r["updates"] / r["processed_s"]
    delivered = r["updates"] / r["delivered_s"]
    print(f"updates: {r['updates']:.0f} from {args.citizens} citizens, "
          f"{r['messages']:.0f} Bot API writes (messages, edits)")  # fmt: skip
    print(f"processed (inbox committed, effects and replies stored): {r['processed_s']:.2f}s")
    print(f"delivered (every reply sent to the server):                {r['delivered_s']:.2f}s")
    print(f"python-telegram-bot Update.de_json alone: {r['de_json']:.0f} updates/s")
    print(
        f"telegram: {processed:.0f} updates/s processed, {delivered:.0f} updates/s delivered "
        f"through adapter+core vs Update.de_json {r['de_json']:.0f} updates/s: "
        f"ratio {processed / r['de_json']:.3f} (delivered {delivered / r['de_json']:.3f})"
    )


if __name__ == "__main__":
    main()
