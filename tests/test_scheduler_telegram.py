"""The broadcast lane with the Telegram adapter's channel (python-telegram-bot over HTTP)
against the Bot API test server enforcing Telegram's limits: the closing results reach every
subscriber (text and chart), the group and the moderator also get the CSV and JSON as
documents, nobody is over the limits, and a citizen who blocked the bot is dropped."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta

from sqlmodel import select
from telegram import Bot

from adapters.telegram.channel import TelegramChannel
from bot.channels import Pace
from bot.consultation_file import load_consultation_file
from storage.models import Citizen
from storage.models_scheduler import AnnouncementChannel
from tests.conftest import OPEN_TIME, SEED
from tests.support.bot_api_server import BotApiServer, RateLimits
from tests.support.harness import FakeClock
from tests.support.scheduling import add_subscribers, scheduled, scheduler_app

os.environ.setdefault("PTB_TIMEDELTA", "true")
SCALE = 20  # Telegram's limits and our pace, 20 times faster


async def test_results_over_telegram_within_its_limits(sqlite_url):
    clock = FakeClock(OPEN_TIME)
    app = scheduler_app(sqlite_url, clock, load_consultation_file(SEED), admins=["telegram:90"])
    citizens = add_subscribers(app, 1, 30, platform="telegram", prefix="10")
    add_subscribers(app, 1, 1, platform="telegram", prefix="9", locale="en")  # the admin: "90"
    with app.db.session() as session:
        session.add(
            AnnouncementChannel(
                consultation_id=1, platform="telegram", chat_id="-1001", locale="fr",
                created_at=clock(),
            )
        )  # fmt: skip
    pace = Pace(25 * SCALE, 1 / SCALE, 20 * SCALE)
    async with BotApiServer(rate_limits=RateLimits(time_scale=SCALE)) as server:
        server.block_chat(citizens[3])
        bot = Bot(server.token, base_url=server.base_url, base_file_url=server.base_file_url)
        async with bot:
            channel = TelegramChannel(bot, pace)
            s = scheduled(app, channel, pace)  # type: ignore[arg-type]
            try:
                await s.tick()  # the opening, late: news to the 31 subscribers and the group
                clock.now = OPEN_TIME + timedelta(days=12)  # past the closing
                await s.tick()
            finally:
                s.close()
        sends = [r for r in server.sent if r.is_send]
        assert server.stats.rate_limited == 0 and server.stats.too_many_requests == 0
    by_chat: dict[str, list[str]] = {}
    for r in sends:
        by_chat.setdefault(str(r.chat_id), []).append(r.method.lower())
    results = ["sendmessage", "sendphoto"]
    files = [*results, "senddocument", "senddocument"]
    for citizen in citizens:
        if citizen == citizens[3]:
            assert citizen not in by_chat  # blocked the bot
        else:
            assert by_chat[citizen] == ["sendmessage", *results]  # opening, then results
    assert by_chat["90"] == ["sendmessage", *files]
    assert by_chat["-1001"] == ["sendmessage", *files]
    group = [r for r in sends if str(r.chat_id) == "-1001"]
    assert min(b.time - a.time for a, b in itertools.pairwise(group)) >= 60 / (20 * SCALE) * 0.9
    admin = [r for r in sends if str(r.chat_id) == "90"]
    assert admin[2].file is not None  # the chart, as a photo
    csv_file = admin[3].file
    assert csv_file is not None and csv_file.filename == "results-ville-intelligente.csv"
    assert "Results" in (admin[1].plain_text or "")
    assert "Résultats" in ([r for r in sends if str(r.chat_id) == citizens[0]][1].plain_text or "")
    with app.db.session() as session:
        blocked = session.exec(
            select(Citizen).where(Citizen.platform_user_id == citizens[3])
        ).one()
    assert not blocked.reachable
    app.close()
