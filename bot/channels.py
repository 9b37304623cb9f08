"""The contract between the core and the messenger adapters.

An adapter implements ``Channel``: it sends one portable message and reports what happened with
these named outcomes, so that the core's senders (interactive replies, broadcasts) decide about
retries and pacing without knowing any SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.messages import OutboundMessage
from bot.router import Capabilities


class ChannelError(Exception):
    """Base of the outcomes an adapter reports when a send did not go through."""


class RetryAfter(ChannelError):
    """The platform throttled us (Telegram 429, Matrix M_LIMIT_EXCEEDED): wait, then retry."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds:.3f}s")
        self.seconds = seconds


class Unreachable(ChannelError):
    """The recipient cannot be reached any more (blocked the bot, left, deleted account):
    do not retry; stop sending to them."""


class TemporaryFailure(ChannelError):
    """A network error, a timeout or a 5xx: retry later with backoff."""


class PermanentFailure(ChannelError):
    """The platform refused this message (a bug or invalid content): do not retry it."""


@dataclass(frozen=True, slots=True)
class Sent:
    """The platform's id of the message sent (or edited), when it has one."""

    message_id: str | None = None


@runtime_checkable
class Channel(Protocol):
    platform: str
    capabilities: Capabilities

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        """Send (or edit) one message. ``key`` is a stable idempotency key (e.g. ``out-42``):
        a platform that supports idempotent sends (Matrix transaction ids) must use it, so a
        retry after a crash cannot post twice."""
        ...


@dataclass(frozen=True, slots=True)
class Pace:
    """Outgoing pace of a platform: overall rate, spacing in one chat, and in one group."""

    per_second: float = 25.0
    per_chat_interval: float = 1.0
    per_group_per_minute: float = 20.0
