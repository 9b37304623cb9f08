"""Run the real Telegram service (python-telegram-bot over HTTP) against the Bot API test server,
inside the test's event loop, and wait for it to settle.

    async with BotApiServer() as server, running_bot(app, server) as tg:
        replies = await tg.say(1001, "/start")
        assert replies[0].plain_text.startswith(...)

``settle()`` waits until the server holds no unconfirmed update and the database no pending
inbox event nor pending reply: everything the citizens sent was handled and answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlmodel import func, select

from adapters.telegram.service import TelegramService
from bot.app import App
from bot.channels import Pace
from bot.runtime import Runtime
from storage.models import InboxEvent, OutboxMessage
from tests.support.bot_api_server import BotApiServer, SentRecord

# Functional tests do not wait for Telegram's pacing; pacing has its own tests.
FAST = Pace(per_second=2000.0, per_chat_interval=0.001, per_group_per_minute=60_000.0)


def consent_command(app: App) -> str | None:
    """The command a citizen types to accept the privacy notice, when the core has one (the
    privacy feature asks for it before anyone takes part)."""
    return "/accept" if "accept" in app.dispatcher.commands else None


def pending_work(app: App) -> tuple[int, int]:
    """(pending inbox events, pending replies) of the Telegram channel."""
    with app.db.session() as s:
        inbox = s.exec(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.platform == "telegram", InboxEvent.status == "pending")
        ).one()
        outbox = s.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.platform == "telegram", OutboxMessage.status == "pending")
        ).one()
    return int(inbox), int(outbox)


@dataclass
class BotUnderTest:
    app: App
    server: BotApiServer
    service: TelegramService
    task: asyncio.Task[None]

    async def settle(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.task.done():
                self.task.result()  # raise what stopped the service
                raise AssertionError("the Telegram service stopped")
            if not self.server.pending_updates and pending_work(self.app) == (0, 0):
                # Nothing pending: also let in-flight HTTP answers land in the records.
                await asyncio.sleep(0.02)
                if not self.server.pending_updates and pending_work(self.app) == (0, 0):
                    return
            if loop.time() > deadline:
                raise AssertionError(
                    f"not settled within {timeout}s: {len(self.server.pending_updates)} "
                    f"unconfirmed update(s), (inbox, outbox) pending = {pending_work(self.app)}"
                )
            await asyncio.sleep(0.01)

    def _since(self, mark: int, chat_id: int) -> list[SentRecord]:
        return [r for r in self.server.sent[mark:] if str(r.chat_id) == str(chat_id)]

    async def say(self, user_id: int, text: str | None = None, **kw: Any) -> list[SentRecord]:
        """Inject a message from ``user_id``; the records sent (and edited) in its chat."""
        mark = len(self.server.sent)
        self.server.inject_message(user_id, text, **kw)
        await self.settle()
        return self._since(mark, kw.get("chat_id") or user_id)

    async def accept(self, user_id: int, **kw: Any) -> None:
        """Accept the privacy notice, as a citizen who read it would (if the core asks)."""
        command = consent_command(self.app)
        if command is not None:
            await self.say(user_id, command, **kw)

    async def press(
        self, user_id: int, data: str, message_id: int, **kw: Any
    ) -> tuple[list[SentRecord], int]:
        """Press a button; (records sent or edited in that chat, the callback's update_id)."""
        mark = len(self.server.sent)
        update_id = self.server.inject_callback(user_id, data, message_id, **kw)
        await self.settle()
        return self._since(mark, kw.get("chat_id") or user_id), update_id


@contextlib.asynccontextmanager
async def running_bot(
    app: App, server: BotApiServer, *, pace: Pace | None = FAST, **kw: Any
) -> AsyncIterator[BotUnderTest]:
    runtime = Runtime(app)
    service = TelegramService(
        app,
        runtime,
        token=server.token,
        api_url=server.base_url,
        file_url=server.base_file_url,
        pace=pace,
        poll_timeout=kw.pop("poll_timeout", 5.0),
        **kw,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        ready = asyncio.ensure_future(service.ready.wait())
        await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert service.ready.is_set(), "the Telegram service did not start"
        yield BotUnderTest(app, server, service, task)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        runtime.close()
