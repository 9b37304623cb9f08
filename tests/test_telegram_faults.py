"""Faults on the Telegram side: throttling, server errors, timeouts, blocked citizens, webhook
mode, and the rule that an update is confirmed only once it is in the inbox."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from sqlmodel import select

from adapters.telegram.service import SECRET_HEADER
from adapters.telegram.translate import translate
from bot.channels import Pace
from bot.consultation_file import load_consultation_file
from storage.models import Citizen, InboxEvent, OutboxMessage
from tests.conftest import SEED
from tests.support.bot_api_server import ApiCall, BotApiServer, RateLimits
from tests.support.telegram import consent_command, running_bot

BOT = "parlons_test_bot"
DOC = load_consultation_file(SEED)


TITLES = tuple(DOC.localized(lang).title for lang in ("fr", "en"))


def cards(server: BotApiServer, users: range) -> dict[int, int]:
    """How many consultation cards each citizen received (other messages aside)."""
    return {
        u: sum((m.plain_text or "").startswith(TITLES) for m in server.messages_to(u))
        for u in users
    }


async def test_a_burst_of_429_and_5xx_loses_no_reply(app):
    users = range(2001, 2009)
    async with (
        BotApiServer(bot_username=BOT) as server,
        running_bot(app, server, retry_backoff=0.1) as tg,
    ):
        server.fail_next("sendMessage", "429", count=2, retry_after=1)
        server.fail_next("sendMessage", "5xx", count=2, status=502)
        server.fail_next("sendMessage", "5xx", count=1, status=500)
        server.fail_next("sendMessage", "timeout", count=1, delay=0.5, apply=False)  # → 504
        for user in users:
            server.inject_message(user, "/start", language_code="en")
        await tg.settle(timeout=30)
        # Every citizen got exactly one card: nothing lost, nothing doubled.
        assert cards(server, users) == dict.fromkeys(users, 1)
        assert server.stats.responses[429] == 2
        assert server.stats.responses[502] == 2 and server.stats.responses[500] == 1
        assert server.stats.responses[504] == 1
        with app.db.session() as s:
            outbox = s.exec(select(OutboxMessage)).all()
        assert {o.status for o in outbox} == {"sent"}
        # No reply doubled either: one message per outbox row.
        assert len([r for r in server.sent if r.is_send]) == len(outbox)


async def test_telegrams_flood_limits_are_respected_with_real_pacing(app):
    """The default pace (about 1 message a second per chat, bursts tolerated) against the test
    server's flood limits: throttled sends are retried after retry_after, none is lost."""
    limits = RateLimits(global_per_s=30, per_chat_per_s=1, per_chat_burst=3, time_scale=4.0)
    async with (
        BotApiServer(bot_username=BOT, rate_limits=limits) as server,
        running_bot(app, server, pace=Pace(per_second=25, per_chat_interval=0.25)) as tg,
    ):
        # /ideas on a question with ideas sends several messages to one chat at once.
        command = consent_command(app)
        for n in range(4):
            if command:
                server.inject_message(2100 + n, command, language_code="en")
            server.inject_message(2100 + n, "/participate", language_code="en")
        await tg.settle(timeout=30)
        for n in range(4):
            preview_to = 2100 + n
            server.inject_message(preview_to, f"Idée {n}", language_code="en")
            await tg.settle(timeout=30)
            preview = server.messages_to(preview_to)[-1]
            server.inject_callback(preview_to, "ok", preview.message_id, language_code="en")
        await tg.settle(timeout=30)
        server.inject_message(2200, "/start", language_code="en")
        await tg.settle(timeout=30)
        mark = len(server.sent)
        server.inject_message(2200, "/ideas 1", language_code="en")
        await tg.settle(timeout=60)
        sent = [r for r in server.sent[mark:] if r.chat_id == 2200]
        # head + 4 ideas + footer, all delivered once despite the per-chat burst limit of 3.
        assert len(sent) == 6
        ideas = [d for r in sent for d in r.callback_data if d.startswith("sup:")]
        assert sorted(ideas) == ["sup:1", "sup:2", "sup:3", "sup:4"]
        assert server.stats.rate_limited >= 1  # the limits were hit, and honoured
        assert sum("#" in (r.plain_text or "") for r in sent) >= 4


async def test_a_blocked_citizen_is_marked_unreachable_and_does_not_stop_the_others(app):
    users = range(2301, 2306)
    blocked = 2301
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        server.block_chat(blocked)
        for user in users:
            server.inject_message(user, "/start", language_code="fr")
        await tg.settle(timeout=20)
        assert cards(server, users) == {blocked: 0, **dict.fromkeys(users[1:], 1)}
        # One attempt per reply, no retry loop; every reply to them failed, no other did.
        attempts = [c for c in server.calls("sendMessage") if str(c.chat_id) == str(blocked)]
        assert attempts and {c.status for c in attempts} == {403}
        with app.db.session() as s:
            citizen = s.exec(select(Citizen).where(Citizen.platform_user_id == str(blocked))).one()
            assert citizen.reachable is False
            failed = s.exec(select(OutboxMessage).where(OutboxMessage.status == "failed")).all()
            assert {(o.chat_id, (o.error or "")[:11]) for o in failed} == {
                (str(blocked), "unreachable")
            }
            assert len(failed) == len(attempts)
        # They unblock the bot and write again: reachable again, answered.
        server.unblock_chat(blocked)
        await tg.say(blocked, "/start", language_code="fr")
        assert cards(server, range(blocked, blocked + 1)) == {blocked: 1}
        assert len(server.calls("sendMessage")) > len(attempts)  # nothing stuck behind them
        with app.db.session() as s:
            citizen = s.exec(select(Citizen).where(Citizen.platform_user_id == str(blocked))).one()
            assert citizen.reachable is True


async def test_get_updates_failures_are_retried_and_nothing_is_lost(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        server.fail_next("getUpdates", "5xx", count=2, status=502)
        server.fail_next("getUpdates", "429", count=1, retry_after=1)
        for user in range(2401, 2404):
            server.inject_message(user, "/start", language_code="en")
        await tg.settle(timeout=30)
        assert cards(server, range(2401, 2404)) == dict.fromkeys(range(2401, 2404), 1)


async def test_updates_are_confirmed_only_after_they_are_in_the_inbox(app):
    """Every getUpdates offset is checked against the database at the moment it arrives: the
    updates it confirms must already be committed to the inbox."""
    violations: list[int] = []
    checked: list[int] = []

    async with BotApiServer(bot_username=BOT) as server:
        original = server._handlers["getupdates"][1]

        async def checking_get_updates(call: ApiCall) -> Any:
            offset = int(call.params.get("offset") or 0)
            if offset:
                with app.db.session() as s:
                    keys = set(s.exec(select(InboxEvent.event_key)).all())
                for update in server.pending_updates:
                    if update["update_id"] < offset:
                        event = translate(update, BOT)
                        checked.append(update["update_id"])
                        if event is not None and event.context.event_id not in keys:
                            violations.append(update["update_id"])
            return await original(call)

        server.add_method("getUpdates", checking_get_updates)
        async with running_bot(app, server) as tg:
            for n in range(30):
                server.inject_message(2500 + n % 5, f"/start {n}", language_code="en")
                if n % 7 == 0:
                    await asyncio.sleep(0.01)
            await tg.settle(timeout=20)
        assert checked, "no offset confirmed anything: the check proved nothing"
        assert violations == []


# --------------------------------------------------------------------------- webhook


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_webhook_mode_answers_200_after_the_commit_and_checks_the_secret(app):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with BotApiServer(bot_username=BOT) as server:
        # Sent while the bot was down: delivered once the webhook is set.
        server.inject_message(2601, "/start", language_code="en")
        async with running_bot(
            app,
            server,
            mode="webhook",
            webhook_url=url,
            webhook_secret="s3cret-Token_1",
            webhook_listen=f"127.0.0.1:{port}",
        ) as tg:
            await server.wait_until(lambda: server.calls("setWebhook"), 5)
            (call,) = server.calls("setWebhook")
            assert call.params["url"] == url
            assert call.params["secret_token"] == "s3cret-Token_1"
            assert not call.params.get("drop_pending_updates")
            await server.wait_for_messages(2601, 1, timeout=10)
            await tg.say(2602, "/stats", language_code="en")
            assert server.messages_to(2602)
            assert {d.status for d in server.webhook_deliveries} == {200}
            assert not server.calls("getUpdates")

            # A forged request (no secret, or a wrong one) is refused and changes nothing.
            forged = {"update_id": 9, "message": {"message_id": 1, "date": 1, "text": "/start",
                      "chat": {"id": 2603, "type": "private"},
                      "from": {"id": 2603, "is_bot": False, "first_name": "M"}}}  # fmt: skip
            async with aiohttp.ClientSession() as http:
                for headers in ({}, {SECRET_HEADER: "wrong"}):
                    async with http.post(url, json=forged, headers=headers) as response:
                        assert response.status == 401
                async with http.post(
                    url, data=b"nonsense", headers={SECRET_HEADER: "s3cret-Token_1"}
                ) as response:
                    assert response.status == 400
            with app.db.session() as s:
                keys = set(s.exec(select(InboxEvent.event_key)).all())
            assert "msg:2603:1" not in keys
