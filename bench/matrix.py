"""Matrix round trips: citizens (real matrix-nio clients) send a message and wait for the bot's
reply, through a real Synapse on 127.0.0.1. Measured for the Parlons bot (our sync loop, inbox,
core, outbox and sender, on SQLite) and, in the same run on the same homeserver, for a minimal
matrix-nio echo bot (``sync_forever`` and a callback that answers with ``room_send``): the
baseline.

    .venv/bin/python bench/matrix.py [--citizens 4] [--round-trips 25] [--encrypted]

Synapse comes from PARLONS_SYNAPSE_PYTHON or .venv-synapse (``python3 dev.py test`` creates it).
The Parlons bot runs with its pace raised (``matrix_pace_*``) so that the measure is the
software, not the configured politeness. The last line prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.matrix.service import MatrixService  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.support.matrix_fixtures import create_dm, nio_client, sync_once  # noqa: E402
from tests.support.synapse import MatrixAccount, SynapseServer  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"


class EchoBot:
    """The baseline: what a minimal matrix-nio bot does (no database, no durability)."""

    def __init__(self, account: MatrixAccount, store: Path, encrypted: bool) -> None:
        self.account, self.store, self.encrypted = account, store, encrypted
        self.client: nio.AsyncClient | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        client = await nio_client(
            self.account,
            store_path=self.store if self.encrypted else None,
            encryption=self.encrypted,
        )
        self.client = client

        async def on_invite(room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
            if event.state_key == client.user_id and event.membership == "invite":
                await client.join(room.room_id)

        async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
            if event.sender != client.user_id:
                await client.room_send(
                    room.room_id,
                    "m.room.message",
                    {"msgtype": "m.notice", "body": event.body},
                    ignore_unverified_devices=True,
                )

        client.add_event_callback(on_invite, nio.InviteMemberEvent)  # type: ignore[arg-type]
        client.add_event_callback(on_message, nio.RoomMessageText)  # type: ignore[arg-type]
        await client.sync(timeout=0, full_state=True)  # skip history, like any bot
        self.task = asyncio.create_task(client.sync_forever(timeout=30_000))

    async def stop(self) -> None:
        assert self.task is not None and self.client is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.close()


class ParlonsBot:
    def __init__(self, account: MatrixAccount, tmp: Path) -> None:
        self.account, self.tmp = account, tmp
        self.stop_event = asyncio.Event()

    async def start(self) -> None:
        settings = Settings(
            database_url=f"sqlite:///{self.tmp / 'parlons.sqlite3'}",
            matrix_homeserver=self.account.homeserver,
            matrix_user_id=self.account.user_id,
            matrix_access_token=self.account.access_token,
            matrix_device_id=self.account.device_id,
            matrix_store_path=str(self.tmp / "parlons-store"),
            matrix_pace_per_second=10_000,
            matrix_pace_room_interval=0,
            # A benchmark citizen writes far faster than anti-flood rules allow a person to.
            flood_actions_per_minute=1_000_000,
            flood_newcomer_actions_per_minute=1_000_000,
        )
        self.app = build_app(settings)
        self.app.import_consultation(SEED)
        self.runtime = Runtime(self.app)
        self.service = MatrixService(self.app, self.runtime, settings)
        self.task = asyncio.create_task(self.service.run(self.stop_event))
        await asyncio.wait_for(self.service.ready.wait(), 60)

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)
        self.runtime.close()
        self.app.close()


async def citizen(
    hs: SynapseServer, bot_user: str, store: Path, encrypted: bool
) -> tuple[nio.AsyncClient, str]:
    account = await hs.aregister(hs.unique_localpart("citizen"))
    client = await nio_client(
        account, store_path=store / account.localpart if encrypted else None, encryption=encrypted
    )
    room_id = await create_dm(client, bot_user, encrypted=encrypted)
    deadline = time.monotonic() + 30
    while True:  # until the bot has JOINED (nio lists invited members among room.users)
        member = client.rooms[room_id].users.get(bot_user)
        if member is not None and not member.invited:
            break
        assert time.monotonic() < deadline, "the bot did not join"
        await sync_once(client, timeout_ms=1000)
    return client, room_id


async def round_trips(
    client: nio.AsyncClient, room_id: str, bot_user: str, text: str, n: int
) -> list[float]:
    """Send ``text`` n times, each time waiting for the bot's next message in the room."""
    latencies = []
    await sync_once(client)
    for _ in range(n):
        started = time.perf_counter()
        sent = await client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, nio.RoomSendResponse), sent
        got = False
        while not got:
            response = await sync_once(client, timeout_ms=10_000)
            joined = response.rooms.join.get(room_id)
            for event in joined.timeline.events if joined else ():
                if getattr(event, "sender", None) == bot_user and isinstance(
                    event, nio.RoomMessage
                ):
                    got = True
            if not got and time.perf_counter() - started > 30:
                raise AssertionError("no reply within 30 s")
        latencies.append(time.perf_counter() - started)
    return latencies


async def measure(
    hs: SynapseServer, bot: Any, bot_user: str, text: str, args: argparse.Namespace, tmp: Path
) -> tuple[float, float]:
    await bot.start()
    try:
        clients = [await citizen(hs, bot_user, tmp, args.encrypted) for _ in range(args.citizens)]
        # Warm-up (keys shared, first replies), then the measure.
        await asyncio.gather(*(round_trips(c, r, bot_user, text, 2) for c, r in clients))
        started = time.perf_counter()
        results = await asyncio.gather(
            *(round_trips(c, r, bot_user, text, args.round_trips) for c, r in clients)
        )
        elapsed = time.perf_counter() - started
        for c, _r in clients:
            await c.close()
    finally:
        await bot.stop()
    latencies = [x for batch in results for x in batch]
    return len(latencies) / elapsed, statistics.median(latencies)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="parlons-bench-matrix-") as tmp_name:
        tmp = Path(tmp_name)
        async with SynapseServer(rate_limits="relaxed") as hs:
            echo_account = await hs.aregister(hs.unique_localpart("echo"))
            parlons_account = await hs.aregister(hs.unique_localpart("parlons"))
            echo = EchoBot(echo_account, tmp / "echo-store", args.encrypted)
            echo_rate, echo_median = await measure(
                hs, echo, echo_account.user_id, "ping", args, tmp
            )
            parlons = ParlonsBot(parlons_account, tmp)
            rate, median = await measure(hs, parlons, parlons_account.user_id, "/stats", args, tmp)
    total = args.citizens * args.round_trips
    print(
        f"citizens={args.citizens} round_trips={total} "
        f"encrypted={args.encrypted} (Synapse on 127.0.0.1, SQLite)"
    )
    print(f"nio echo bot: {echo_rate:.1f} round trips/s, median {echo_median * 1000:.0f} ms")
    print(f"parlons (/stats): {rate:.1f} round trips/s, median {median * 1000:.0f} ms")
    print(
        f"parlons {rate:.1f} rt/s · nio echo {echo_rate:.1f} rt/s · ratio {rate / echo_rate:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=4)
    parser.add_argument("--round-trips", type=int, default=25, help="per citizen")
    parser.add_argument("--encrypted", action="store_true", help="encrypted DMs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
