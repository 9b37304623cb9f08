"""Driving the Parlons Matrix bot from real matrix-nio citizen clients (see test_matrix_*.py).

``RunningBot`` runs ``MatrixService`` in the test's event loop (its database calls go through a
``Runtime`` thread, as in production). ``Citizen`` wraps a nio client and its room with the bot:
``await citizen.say("/start")`` sends a message, waits until the bot has processed that very
event (inbox row done, every reply of it sent: read from the database) and then until the
citizen's client has received each of those replies, recognised by the outbox key the bot puts
in every event (``org.parlons.key``). No sleeps, no guessing how many replies will come.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nio
from sqlmodel import select

from adapters.matrix.render import KEY_FIELD
from adapters.matrix.service import MatrixService
from bot.app import App
from bot.runtime import Runtime
from bot.settings import Settings
from storage.models import InboxEvent, OutboxMessage
from tests.support.matrix_fixtures import MatrixTimeout, send_text, sync_once
from tests.support.synapse import MatrixAccount


async def wait_joined(
    client: nio.AsyncClient, room_id: str, user_id: str, *, timeout: float = 20
) -> None:
    """Sync ``client`` until ``user_id`` has JOINED ``room_id`` (nio lists invited users among
    ``room.users`` too, so ``wait_for_join`` returns as soon as the invitation is seen)."""
    deadline = time.monotonic() + timeout
    while True:
        room = client.rooms.get(room_id)
        member = room.users.get(user_id) if room is not None else None
        if member is not None and not member.invited:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MatrixTimeout(f"{user_id} did not join {room_id} within {timeout} s")
        await sync_once(client, timeout_ms=int(min(remaining, 2) * 1000))


def bot_settings(app: App, account: MatrixAccount, store: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "matrix_homeserver": account.homeserver,
        "matrix_user_id": account.user_id,
        "matrix_access_token": account.access_token,
        "matrix_device_id": account.device_id,
        "matrix_store_path": str(store),
        "matrix_sync_timeout": 5.0,
        "matrix_pace_per_second": 1000.0,
        "matrix_pace_room_interval": 0.0,
    }
    values.update(extra)
    return Settings(**{**app.settings.model_dump(), **values})


class RunningBot:
    """The Matrix service of ``app`` running as a task of the current event loop."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.runtime = Runtime(app)
        self.service = MatrixService(app, self.runtime, settings)
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> str:
        return self.service.user_id

    async def start(self, timeout: float = 30) -> RunningBot:
        self.task = asyncio.create_task(self.service.run(self.stop_event))
        ready = asyncio.ensure_future(self.service.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self.task}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
        if self.task in done:
            self.task.result()  # raises what made the service stop
            raise AssertionError("the Matrix service stopped during startup")
        if ready not in done:
            ready.cancel()
            raise MatrixTimeout(f"the bot did not sync within {timeout} s")
        return self

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
        self.runtime.close()

    async def __aenter__(self) -> RunningBot:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --------------------------------------------------------------------- database probes


def _processed(app: App, event_id: str) -> list[OutboxMessage] | None:
    """The replies to a Matrix event once it is processed and they are all sent, else None."""
    with app.db.session() as session:
        row = session.exec(
            select(InboxEvent).where(
                InboxEvent.platform == "matrix", InboxEvent.event_key == event_id
            )
        ).first()
        if row is None or row.status == "pending":
            return None
        replies = list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.inbox_id == row.id)
                .order_by(OutboxMessage.id)  # type: ignore[arg-type]
            ).all()
        )
        if any(r.status == "pending" for r in replies):
            return None
        return replies


async def wait_processed(app: App, event_id: str, timeout: float = 20) -> list[OutboxMessage]:
    deadline = time.monotonic() + timeout
    while True:
        replies = await asyncio.to_thread(_processed, app, event_id)
        if replies is not None:
            return replies
        if time.monotonic() > deadline:
            raise MatrixTimeout(f"the bot did not process {event_id} within {timeout} s")
        await asyncio.sleep(0.02)


async def wait_ignored(app: App, event_id: str, timeout: float = 3) -> None:
    """The bot never records this event (e.g. history, a notice): nothing in the inbox."""
    await asyncio.sleep(timeout)

    def probe() -> bool:
        with app.db.session() as session:
            return (
                session.exec(select(InboxEvent).where(InboxEvent.event_key == event_id)).first()
                is not None
            )

    assert not await asyncio.to_thread(probe), f"{event_id} should have been ignored"


# --------------------------------------------------------------------- citizens


@dataclass
class Reply:
    event_id: str
    key: str
    content: dict[str, Any]

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))

    @property
    def html(self) -> str:
        return str(self.content.get("formatted_body", ""))

    def option(self, command: str) -> str:
        """The number of the option whose typed command is ``command`` (``/support 3``)."""
        match = re.search(r"\[(\d+)\][^\n]*?" + re.escape(command) + r"(?!\d)", self.body)
        assert match, f"no option {command!r} in:\n{self.body}"
        return match.group(1)


class Replies(list[Reply]):
    @property
    def text(self) -> str:
        return "\n\n".join(r.body for r in self)

    def about(self, contribution_id: int) -> Reply:
        """The idea message showing contribution ``#id``."""
        for reply in self:
            if reply.body.startswith(f"#{contribution_id} ·") or f"\n#{contribution_id} ·" in (
                reply.body
            ):
                return reply
        raise AssertionError(f"no message about #{contribution_id} in {self.text}")

    def option(self, command: str) -> str:
        for reply in self:
            with contextlib.suppress(AssertionError):
                return reply.option(command)
        raise AssertionError(f"no option {command!r} in:\n{self.text}")


_CITIZEN_FILTER = {"room": {"timeline": {"limit": 1000}}}


@dataclass
class Citizen:
    app: App
    account: MatrixAccount
    client: nio.AsyncClient
    room_id: str
    bot_user_id: str
    # Bot events received in the room, by outbox key.
    received: dict[str, Reply] = field(default_factory=dict)
    other: list[dict[str, Any]] = field(default_factory=list)
    _undecrypted: list[nio.MegolmEvent] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def _take(self, event: Any) -> None:
        source = getattr(event, "source", None) or {}
        if getattr(event, "sender", None) != self.bot_user_id:
            return
        content = source.get("content") or {}
        key = content.get(KEY_FIELD)
        if isinstance(key, str):
            self.received.setdefault(key, Reply(event.event_id, key, content))
        else:
            self.other.append(source)

    async def pump(self, timeout_ms: int = 1000) -> None:
        """One sync of the citizen's client, collecting the bot's events (a large timeline
        limit: the citizen may not have synced for a while, e.g. while the bot was down)."""
        client = self.client
        response = await client.sync(timeout=timeout_ms, sync_filter=_CITIZEN_FILTER)
        assert isinstance(response, nio.SyncResponse), response
        if client.olm is not None:
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        still = []
        for event in self._undecrypted:
            try:
                self._take(self.client.decrypt_event(event))
            except Exception:
                still.append(event)
        self._undecrypted = still
        joined = response.rooms.join.get(self.room_id)
        if joined is None:
            return
        for event in joined.timeline.events:
            if isinstance(event, nio.MegolmEvent):
                self._undecrypted.append(event)
            else:
                self._take(event)

    async def replies_to(self, event_id: str, timeout: float = 20) -> Replies:
        rows = await wait_processed(self.app, event_id, timeout)
        keys = [f"out-{row.id}" for row in rows]
        deadline = time.monotonic() + timeout
        while not all(k in self.received for k in keys):
            if time.monotonic() > deadline:
                missing = [r for r in rows if f"out-{r.id}" not in self.received]
                detail = [(r.id, r.status, r.platform_message_id, r.error) for r in missing]
                raise MatrixTimeout(f"{self.user_id} did not receive {detail}")
            await self.pump(500)
        return Replies(self.received[k] for k in keys)

    async def send(self, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        room = self.client.rooms.get(self.room_id)
        encrypted = self.client.olm is not None and room is not None and room.encrypted
        if encrypted and self.client.should_query_keys:
            await self.client.keys_query()
        response = await self.client.room_send(
            self.room_id, event_type, content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def say(self, text: str, timeout: float = 20) -> Replies:
        response = await send_text(self.client, self.room_id, text)
        assert isinstance(response, nio.RoomSendResponse), response
        return await self.replies_to(response.event_id, timeout)

    async def reply(self, target: Reply, text: str) -> Replies:
        """A Matrix reply, with the quoted fallback clients put in front of it."""
        quoted = "\n".join(f"> {line}" for line in target.body.split("\n"))
        quoted = quoted.replace("> ", f"> <{self.bot_user_id}> ", 1)
        content = {
            "msgtype": "m.text",
            "body": f"{quoted}\n\n{text}",
            "format": "org.matrix.custom.html",
            "formatted_body": (
                f"<mx-reply><blockquote>{target.html}</blockquote></mx-reply>{text}"
            ),
            "m.relates_to": {"m.in_reply_to": {"event_id": target.event_id}},
        }
        return await self.replies_to(await self.send(content))

    async def react(self, target: Reply, key: str = "👍", *, encrypted: bool = False) -> str:
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": target.event_id, "key": key}
        }
        if encrypted:
            # nio never encrypts reactions; Element does: encrypt it ourselves.
            return await raw_send_encrypted(self, "m.reaction", content)
        return await self.send(content, "m.reaction")

    async def redact(self, event_id: str) -> str:
        response = await self.client.room_redact(self.room_id, event_id)
        assert isinstance(response, nio.RoomRedactResponse), response
        return str(response.event_id)


async def raw_put(account: MatrixAccount, path: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {account.access_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.put(f"{account.homeserver}{path}", json=body, headers=headers) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        assert resp.status == 200, data
        return data


async def raw_send_encrypted(citizen: Citizen, event_type: str, content: dict[str, Any]) -> str:
    """Encrypt with the citizen's current outbound session (already shared) and send."""
    client = citizen.client
    if client.olm.should_share_group_session(citizen.room_id):  # type: ignore[union-attr]
        await client.share_group_session(citizen.room_id, ignore_unverified_devices=True)
    _type, encrypted = client.encrypt(citizen.room_id, event_type, content)
    room = urllib.parse.quote(citizen.room_id)
    txn = secrets.token_hex(8)
    path = f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{txn}"
    data = await raw_put(citizen.account, path, encrypted)
    return str(data["event_id"])


async def timeline_keys(citizen: Citizen) -> list[str]:
    """Every ``org.parlons.key`` of the bot's events in the citizen's room, from the server's
    timeline (decrypted by the citizen's client), oldest first."""
    client = citizen.client
    keys: list[str] = []
    token = client.next_batch
    while True:
        response = await client.room_messages(citizen.room_id, start=token, limit=500)
        assert isinstance(response, nio.RoomMessagesResponse), response
        for event in response.chunk:
            if getattr(event, "sender", None) != citizen.bot_user_id:
                continue
            if isinstance(event, nio.MegolmEvent):
                raise AssertionError(f"undecryptable bot event {event.event_id}")
            key = (event.source.get("content") or {}).get(KEY_FIELD)
            if key:
                keys.append(key)
        if not response.chunk or not response.end or response.end == token:
            break
        token = response.end
    keys.reverse()
    return keys
