"""The Matrix ``Channel``: sends one portable message as one or more room events with nio.

Idempotent: the transaction id of every event is derived from the outbox key (``out-42``) and
an installation id kept in the database, so a retry after a crash (same key) is deduplicated by
the homeserver instead of posting twice. nio's error responses are turned into the channel
outcomes here, at the edge: ``M_LIMIT_EXCEEDED`` → ``RetryAfter(retry_after_ms)``, not being in
the room → ``Unreachable``, network errors and 5xx → ``TemporaryFailure``, anything else the
homeserver refuses → ``PermanentFailure``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import aiohttp
import nio

from adapters.matrix.render import KEY_FIELD, MAX_LENGTH, contents
from adapters.matrix.translate import PLATFORM
from bot.channels import (
    PermanentFailure,
    RetryAfter,
    Sent,
    TemporaryFailure,
    Unreachable,
)
from bot.messages import Attachment, OutboundMessage
from bot.router import Capabilities

log = logging.getLogger(__name__)

_PERMANENT = {"M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM", "M_UNKNOWN"}


def capabilities(bot_user_id: str) -> Capabilities:
    return Capabilities(
        buttons=False,
        edits=False,
        max_length=MAX_LENGTH,
        # Opens a chat with the bot from a room (matrix.to shows "Message" for a user).
        deep_link=f"https://matrix.to/#/{bot_user_id}",
    )


def outcome(response: nio.ErrorResponse, what: str) -> Exception:
    """A nio error response → the channel outcome (an exception to raise)."""
    code = response.status_code
    status = response.transport_response.status if response.transport_response else None
    detail = f"{what}: {response}"
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        return RetryAfter((response.retry_after_ms or 1000) / 1000)
    if code == "M_FORBIDDEN":
        return Unreachable(detail)
    if status is not None and status >= 500:
        return TemporaryFailure(detail)
    if code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN") or status is None:
        return TemporaryFailure(detail)
    if code in _PERMANENT or status in (400, 413):
        return PermanentFailure(detail)
    return TemporaryFailure(detail)


class MatrixChannel:
    platform = PLATFORM

    def __init__(
        self,
        client: nio.AsyncClient,
        user_id: str,
        *,
        crypto_lock: asyncio.Lock | None = None,
    ) -> None:
        self.client = client
        self.capabilities = capabilities(user_id)
        self.crypto_lock = crypto_lock or asyncio.Lock()
        # Set from the database at start (see MatrixService): scopes transaction ids to this
        # installation, so a fresh database on the same device cannot collide with old ids.
        self.txn_prefix = "parlons"
        # Set once the transaction-id prefix is loaded and nio has synced the rooms: sends before
        # that (another service, e.g. the scheduler, sharing this channel) are told to retry.
        self.ready = False
        # Rooms the bot left (nio forgets them): replies to them cannot be delivered.
        self.left_rooms: set[str] = set()
        self.sent_events = 0

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        if not self.ready:
            raise TemporaryFailure("the Matrix channel has not synced yet")
        room_id = message.chat_id
        first: str | None = None
        parts = contents(message)
        for index, content in enumerate(parts):
            content[KEY_FIELD] = key if index == 0 else f"{key}.{index}"
            event_id = await self._send_event(room_id, "m.room.message", content, index, key)
            first = first or event_id
        if message.attachment is not None:
            content = await self._attachment_content(room_id, message.attachment)
            content[KEY_FIELD] = f"{key}.file"
            event_id = await self._send_event(room_id, "m.room.message", content, "file", key)
            first = first or event_id
        return Sent(first)

    async def _send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], part: object, key: str
    ) -> str:
        txn = f"{self.txn_prefix}-{key}" + (f".{part}" if part else "")
        if room_id in self.left_rooms:
            raise Unreachable(f"left room {room_id}")
        room = self.client.rooms.get(room_id)
        try:
            if room is not None and room.encrypted:
                await self.refresh_keys()
            response = await self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        except (aiohttp.ClientError, TimeoutError, nio.SendRetryError) as exc:
            raise TemporaryFailure(f"send to {room_id}: {exc!r}") from exc
        except nio.LocalProtocolError as exc:
            # e.g. "No such room": nio has not synced this room yet (it must know a room's
            # encryption and members to send to it).
            raise TemporaryFailure(f"send to {room_id}: {exc}") from exc
        if isinstance(response, nio.ErrorResponse):
            raise outcome(response, f"send to {room_id}")
        self.sent_events += 1
        return str(response.event_id)

    async def refresh_keys(self) -> None:
        """Query the device keys nio is missing before encrypting (new members, new devices),
        one query at a time (the sync loop does the same after each sync)."""
        client = self.client
        async with self.crypto_lock:
            if client.olm is None or not client.should_query_keys:
                return
            response = await client.keys_query()
            if isinstance(response, nio.ErrorResponse):
                raise outcome(response, "keys_query")

    async def _attachment_content(self, room_id: str, attachment: Attachment) -> dict[str, Any]:
        room = self.client.rooms.get(room_id)
        encrypt = bool(room is not None and room.encrypted)
        try:
            upload, keys = await self.client.upload(
                io.BytesIO(attachment.data),
                content_type=attachment.mime_type,
                filename=attachment.filename,
                encrypt=encrypt,
                filesize=len(attachment.data),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryFailure(f"upload: {exc!r}") from exc
        if isinstance(upload, nio.ErrorResponse):
            raise outcome(upload, "upload")
        msgtype = "m.image" if attachment.mime_type.startswith("image/") else "m.file"
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": attachment.caption or attachment.filename,
            "filename": attachment.filename,
            "info": {"mimetype": attachment.mime_type, "size": len(attachment.data)},
        }
        if keys is not None:
            content["file"] = {**keys, "url": upload.content_uri}
        else:
            content["url"] = upload.content_uri
        return content
