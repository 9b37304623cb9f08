"""Synapse's DEFAULT rate limits (``rc_message``: 0.2 messages/s per account, burst 10): a burst
of replies gets ``M_LIMIT_EXCEEDED``; the bot honours ``retry_after_ms``, backs off, and loses
nothing — every reply arrives, in order, once."""

from __future__ import annotations

import time
from pathlib import Path

import nio
import pytest

from tests.conftest import make_app
from tests.support.harness import FakeClock
from tests.support.matrix_bot import Citizen, RunningBot, bot_settings, timeline_keys, wait_joined
from tests.support.matrix_fixtures import ClientFactory, create_dm, send_text
from tests.support.synapse import SynapseServer

COMMANDS = [
    "/start",
    "/about",
    "/about 1",
    "/about 2",
    "/about 3",
    "/testimonials",
    "/help",
    "/stats",
    "/ideas 1",
]


@pytest.mark.slow
async def test_default_rate_limits_are_honoured_and_nothing_is_lost(
    synapse_default_limits: SynapseServer,
    matrix_clients: ClientFactory,
    sqlite_url: str,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    hs = synapse_default_limits
    app = make_app(sqlite_url, clock)
    bot_account = await hs.aregister(hs.unique_localpart("parlons"))
    citizen_account = await hs.aregister(hs.unique_localpart("citizen"))
    # A pace far above what Synapse allows by default: the homeserver pushes back.
    settings = bot_settings(app, bot_account, tmp_path / "store", matrix_pace_per_second=50)
    try:
        async with RunningBot(app, settings) as bot:
            client = await matrix_clients(citizen_account)
            room_id = await create_dm(client, bot_account.user_id)
            await wait_joined(client, room_id, bot_account.user_id)
            citizen = Citizen(app, citizen_account, client, room_id, bot_account.user_id)
            started = time.monotonic()
            # Nine quick messages (the citizen's own burst stays under 10) that ask for more
            # replies than the bot's burst of 10 allows.
            sent = []
            for command in COMMANDS:
                response = await send_text(client, room_id, command)
                assert isinstance(response, nio.RoomSendResponse), response
                sent.append(response.event_id)
            received = []
            for event_id in sent:
                replies = await citizen.replies_to(event_id, timeout=120)
                assert replies, event_id
                received.extend(r.key for r in replies)
            elapsed = time.monotonic() - started
            assert len(received) > 10
            assert bot.service.stats.throttled >= 1  # M_LIMIT_EXCEEDED came back, was honoured
            assert elapsed >= 4  # ...by waiting (0.2 messages/s beyond the burst)
            keys = await timeline_keys(citizen)
            assert keys == received  # each reply once, in order
            print(
                f"[matrix-ratelimit] {len(received)} replies in {elapsed:.1f}s, "
                f"{bot.service.stats.throttled} throttled sends"
            )
    finally:
        app.close()
