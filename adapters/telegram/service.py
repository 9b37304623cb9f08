"""The Telegram channel service: receive updates durably, process them, send the replies.

python-telegram-bot does the HTTP (``telegram.Bot``), inside our event loop. Its ``Updater`` and
webhook handler are not used: they confirm updates before they are handled (see
the project's platform notes on Telegram delivery). Instead:

- **Polling** (default): our own ``getUpdates`` loop. Each batch is translated and committed to
  the inbox (``engine.ingest_many``, deduplicated on stable platform keys) *before* the next
  ``getUpdates`` call confirms it with ``offset = last update_id + 1``. A crash anywhere before
  that commit gets the batch delivered again; after it, the inbox already holds it. The offset is
  never stored: after a restart Telegram hands back every unconfirmed update (``update_id``
  may restart at a random value after a week idle, so a stored offset could skip updates).
  ``drop_pending_updates`` is never used.
- **Webhook**: an aiohttp endpoint that checks ``X-Telegram-Bot-Api-Secret-Token`` and answers
  200 only after the inbox commit (anything else makes Telegram deliver the update again).
- **Processing**: one task takes pending inbox rows in order, a batch at a time; the engine
  applies each event's effect, stores its replies and marks it done in the same transaction.
- **Sending**: ``bot.delivery.OutboxSender`` with ``TelegramChannel`` (paced; 429 retried after
  ``retry_after``; 403 marks the citizen unreachable once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot
from telegram import error as tg_error
from telegram.request import HTTPXRequest

from adapters.telegram.channel import TelegramChannel, _retry_seconds, telegram_pace
from adapters.telegram.commands import (
    MENUS_KEY,
    admin_chat_ids,
    desired_menus,
    menu_signature,
    set_chat_commands,
    set_default_commands,
)
from adapters.telegram.translate import (
    ALLOWED_UPDATES,
    MAX_FILE_BYTES,
    PLATFORM,
    PendingDocument,
    translate,
)
from bot.app import App
from bot.channels import Pace
from bot.delivery import OutboxSender
from bot.messages import InboundEvent
from bot.router import Role
from bot.runtime import Runtime
from bot.workers import Leader

log = logging.getLogger(__name__)
T = TypeVar("T")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)


class _Stopped(Exception):
    pass


class _RawBot(Bot):
    """``Bot`` with a ``getUpdates`` that returns the raw JSON: updates are translated from the
    Bot API's own dictionaries, so one update the library cannot parse never blocks the rest."""

    async def get_updates_json(
        self, offset: int | None, timeout: float, limit: int, allowed: Iterable[str]
    ) -> list[dict[str, Any]]:
        result = await self._post(
            "getUpdates",
            {
                "offset": offset,
                "timeout": int(timeout),
                "limit": limit,
                "allowed_updates": list(allowed),
            },
            read_timeout=timeout + 10.0,
        )
        return list(result or [])


class _RedactToken(logging.Filter):
    """Never let the bot token reach a log line (httpx and others log request URLs)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: leave it to logging
            return True
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "<token>"), None
        return True


def webhook_secret_for(token: str) -> str:
    """A stable secret derived from the token when none is configured (A-Z, a-z, 0-9)."""
    return hashlib.sha256(f"parlons-webhook:{token}".encode()).hexdigest()[:48]


class _Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.delay = first, cap, 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def next(self) -> float:
        self.delay = self.first if not self.delay else min(self.cap, self.delay * 2)
        return self.delay


async def _until_stop(awaitable: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``awaitable`` unless ``stop`` is set first (then cancel it and raise _Stopped)."""
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise _Stopped


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class TelegramService:
    """``name``, ``channel`` and ``async run(stop)``, as ``bot.serve`` expects."""

    name = "telegram"

    def __init__(
        self,
        app: App,
        runtime: Runtime,
        *,
        token: str,
        api_url: str = "https://api.telegram.org/bot",
        file_url: str = "https://api.telegram.org/file/bot",
        mode: str = "polling",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_listen: str = "127.0.0.1:8443",
        pace: Pace | None = None,
        retry_backoff: float = 0.5,
        poll_timeout: float = 25.0,
        batch: int = 100,
        admins: Iterable[str] = (),
        default_locale: str = "fr",
        set_commands: bool = True,
        menu_refresh: float = 60.0,
        stop_grace: float = 2.0,
    ) -> None:
        if mode not in ("polling", "webhook"):
            raise ValueError(f"unknown Telegram mode {mode!r}")
        if mode == "webhook" and not webhook_url:
            raise ValueError("webhook mode needs PARLONS_TELEGRAM_WEBHOOK_URL")
        self.app = app
        self.runtime = runtime
        self.engine = app.engine
        self.mode = mode
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret or webhook_secret_for(token)
        self.webhook_listen = webhook_listen
        self.poll_timeout = poll_timeout
        self.batch = batch
        self.admins = admin_chat_ids(admins)
        self.default_locale = default_locale
        self.set_commands = set_commands
        self.stop_grace = stop_grace
        self.menu_refresh = menu_refresh
        self._token_filter = _RedactToken(token)
        _protect_logs(self._token_filter)  # before the Bot exists: it logs its URLs
        self.bot = _RawBot(
            token,
            base_url=api_url,
            base_file_url=file_url,
            request=HTTPXRequest(connection_pool_size=8, read_timeout=10.0, write_timeout=20.0),
            get_updates_request=HTTPXRequest(connection_pool_size=2),
        )
        self.pace = pace or telegram_pace()
        self.channel = TelegramChannel(self.bot, self.pace)
        self.sender = OutboxSender(runtime, self.channel, self.pace, backoff=retry_backoff)
        self.inbox_wake = asyncio.Event()
        self.poll_leader = Leader.for_account(
            app.db.url, PLATFORM, token.split(":", 1)[0], retry=app.settings.worker_leader_retry
        )
        self.ready = asyncio.Event()
        self.username: str | None = None
        self.webhook_port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        _protect_logs(self._token_filter)
        try:
            await self._start(stop)
        except _Stopped:
            return
        sending = asyncio.ensure_future(self.sender.run(stop))
        try:
            # Polling: one getUpdates consumer per token across workers (bot.workers); every
            # worker processes the inbox and sends. Webhook: every worker serves the endpoint.
            receiver = (
                self.poll_leader.run(stop, self._poll)
                if self.mode == "polling"
                else self._serve_webhook(stop)
            )
            await asyncio.gather(receiver, self._process(stop), self._refresh_menus(stop))
        finally:
            # The sender finishes its flush (or the message in flight) only so long: a backlog
            # stays in the outbox for the next start. A message cut off between sending and
            # being marked is sent again then (at most that one).
            done, _pending = await asyncio.wait({sending}, timeout=self.stop_grace)
            if not done:
                sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sending
            with contextlib.suppress(Exception):
                await self.bot.shutdown()

    async def _start(self, stop: asyncio.Event) -> None:
        backoff = _Backoff()
        while True:
            try:
                await _until_stop(self.bot.initialize(), stop)
                break
            except tg_error.InvalidToken:
                raise RuntimeError(
                    "Telegram refused the bot token (PARLONS_TELEGRAM_TOKEN)"
                ) from None
            except tg_error.TelegramError as exc:
                delay = backoff.next()
                log.warning("Telegram unreachable at start (%s); retrying in %.1fs", exc, delay)
                await _sleep(delay, stop)
                if stop.is_set():
                    raise _Stopped from None
        self.username = self.bot.username
        self.channel.set_username(self.username)
        self.engine.register_channel(PLATFORM, self.channel.capabilities)
        log.info("Telegram bot @%s (%s mode)", self.username, self.mode)
        if self.set_commands:
            await self._commands()
        if self.mode == "polling":
            await self._call_until_done(lambda: self.bot.delete_webhook(), stop, "deleteWebhook")
        self.ready.set()

    async def _call_until_done(self, make: Any, stop: asyncio.Event, what: str) -> None:
        backoff = _Backoff()
        while True:
            try:
                await _until_stop(make(), stop)
                return
            except tg_error.RetryAfter as exc:
                await _sleep(_retry_seconds(exc), stop)
            except tg_error.TelegramError as exc:
                delay = backoff.next()
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                await _sleep(delay, stop)
            if stop.is_set():
                raise _Stopped

    async def _commands(self) -> None:
        """The commands menus; a failure here never prevents the bot from answering."""
        try:
            await set_default_commands(self.bot, self.app.dispatcher, self.default_locale)
        except tg_error.TelegramError as exc:
            log.warning("could not set the commands menu: %s", exc)
        try:
            await self._chat_menus()
        except Exception:
            log.exception("could not set the moderators' commands menus")

    async def _chat_menus(self) -> None:
        """Give moderators' and administrators' chats their menu, take it back from those who
        lost the role; only the differences with what was set before are sent."""
        dispatcher = self.app.dispatcher
        moderating = await self.runtime.call(self.engine.moderating_chats, PLATFORM)
        desired = desired_menus(moderating, self.admins)
        stored = await self.runtime.call(self.engine.channel_state, MENUS_KEY)
        previous: dict[str, str] = json.loads(stored) if stored else {}
        applied = dict(previous)
        signatures = {
            role: menu_signature(dispatcher, role, self.default_locale)
            for role in set(desired.values())
        }
        changes = [
            (chat, role)
            for chat, role in desired.items()
            if previous.get(chat) != signatures[role]
        ]
        changes += [(chat, Role.CITIZEN) for chat in previous if chat not in desired]
        for chat, role in changes:
            try:
                await set_chat_commands(self.bot, dispatcher, [chat], role, self.default_locale)
            except tg_error.TelegramError as exc:
                # Typically a moderator who never opened the bot ("chat not found"): tried
                # again at the next refresh.
                log.info("could not set the %s menu in one chat: %s", role.name, exc)
                continue
            if role == Role.CITIZEN:
                applied.pop(chat, None)
            else:
                applied[chat] = signatures[role]
        if applied != previous:
            value = json.dumps(applied, sort_keys=True)
            await self.runtime.call(self.engine.ingest_batch, [], {MENUS_KEY: value})

    async def _refresh_menus(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep(self.menu_refresh, stop)
            if not stop.is_set() and self.set_commands:
                try:
                    await self._chat_menus()
                except Exception:  # never let the menus stop the bot
                    log.exception("refreshing the commands menus failed")

    # ------------------------------------------------------------------ receiving

    async def _events(self, updates: list[dict[str, Any]]) -> list[InboundEvent]:
        """Translate a batch; download the documents it carries (network errors propagate, so
        the batch is not confirmed and comes again)."""
        events: list[InboundEvent] = []
        for update in updates:
            try:
                translated = translate(update, self.username)
            except Exception:
                log.exception("could not translate update %s; ignored", update.get("update_id"))
                continue
            if isinstance(translated, PendingDocument):
                if int(translated.context.user_id) in self.admins:
                    translated = await self._download(translated)
                else:
                    translated = translated.metadata_only()
            if translated is not None:
                events.append(translated)
        return events

    async def _download(self, pending: PendingDocument) -> InboundEvent:
        try:
            file = await self.bot.get_file(pending.file_id)
            if file.file_size is not None and file.file_size > MAX_FILE_BYTES:
                return pending.too_large()
            data = await file.download_as_bytearray()
        except tg_error.BadRequest as exc:  # gone, or too big for the Bot API to serve
            log.info("document not downloadable: %s", exc.message)
            return pending.too_large()
        return pending.complete(bytes(data))

    async def _commit(self, updates: list[dict[str, Any]]) -> None:
        events = await self._events(updates)
        if events:
            await self.runtime.call(self.engine.ingest_many, events)
            self.inbox_wake.set()

    async def _poll(self, stop: asyncio.Event) -> None:
        offset: int | None = None
        backoff = _Backoff()
        while not stop.is_set():
            try:
                updates = await _until_stop(
                    self.bot.get_updates_json(
                        offset, self.poll_timeout, self.batch, ALLOWED_UPDATES
                    ),
                    stop,
                )
            except _Stopped:
                break
            except tg_error.RetryAfter as exc:
                await _sleep(_retry_seconds(exc), stop)
                continue
            except tg_error.TelegramError as exc:
                delay = backoff.next()
                log.warning("getUpdates failed (%s); retrying in %.1fs", exc, delay)
                await _sleep(delay, stop)
                continue
            if not updates:
                backoff.reset()
                continue
            try:
                await self._commit(updates)
            except Exception as exc:
                # Not committed, so not confirmed: the same updates come again.
                delay = backoff.next()
                log.warning("could not commit %d update(s) (%r); retrying", len(updates), exc)
                await _sleep(delay, stop)
                continue
            backoff.reset()
            # The next getUpdates confirms everything below this offset.
            offset = max(int(u["update_id"]) for u in updates) + 1
        if offset is not None:
            # Confirm the last committed batch now rather than at the next start.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bot.get_updates_json(offset, 0, 1, ALLOWED_UPDATES), 3)

    async def _serve_webhook(self, stop: asyncio.Event) -> None:
        url = self.webhook_url
        assert url is not None
        path = urlsplit(url).path or "/"
        host, _sep, port = self.webhook_listen.rpartition(":")
        web_app = web.Application(client_max_size=4 * 1024 * 1024)
        web_app.router.add_post(path, self._on_webhook)
        runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        self.webhook_port = int(runner.addresses[0][1])
        try:
            await self._call_until_done(
                lambda: self.bot.set_webhook(
                    url,
                    secret_token=self.webhook_secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                ),
                stop,
                "setWebhook",
            )
            await stop.wait()
        except _Stopped:
            pass
        finally:
            await runner.cleanup()

    async def _on_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            return web.Response(status=401, text="unauthorized")
        try:
            update = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict):
            return web.Response(status=400, text="not an update")
        try:
            await self._commit([update])
        except Exception:
            log.exception("webhook update %s not committed", update.get("update_id"))
            return web.Response(status=500, text="retry later")  # Telegram delivers it again
        return web.Response(status=200, text="ok")

    # ------------------------------------------------------------------ processing

    def _process_batch(self) -> tuple[int, int]:
        """In the database thread: process up to ``batch`` pending events, in order, in one
        transaction (the engine's group commit; an event that fails is retried alone);
        returns (events taken, replies); -1 taken: events pending, all in chats that other
        workers are processing."""
        taken, replies = self.engine.process_available(PLATFORM, self.batch)
        if not taken and self.engine.pending(PLATFORM, 1):
            return -1, 0
        return taken, len(replies)

    async def _process(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.inbox_wake.clear()
            try:
                handled, replies = await self.runtime.call(self._process_batch)
            except Exception:
                log.exception("processing the inbox failed")
                await _sleep(1.0, stop)
                continue
            if replies:
                self.sender.wake.set()
            if handled > 0:
                continue
            if handled < 0:  # other workers hold those chats: look again shortly
                await _sleep(0.05, stop)
                continue
            waiters = [
                asyncio.ensure_future(self.inbox_wake.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()


def _protect_logs(token_filter: logging.Filter) -> None:
    # httpx logs every request URL (which holds the token) at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if token_filter not in handler.filters:
            handler.addFilter(token_filter)
