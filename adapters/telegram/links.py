"""Deep links (``https://t.me/<bot>?start=<payload>``) and the bot's username."""

from __future__ import annotations

import re

from telegram import Bot
from telegram.request import HTTPXRequest

# Telegram's rule for a start payload.
_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SOURCE = re.compile(r"^[a-z0-9_-]{1,48}$")


class LinkError(ValueError):
    """A deep link that Telegram would not accept."""


def start_payload(slug: str, source: str | None = None) -> str:
    """``slug`` or ``slug-source``; the core reads it back with ``resolve_start_payload``."""
    if source is not None:
        source = source.strip().lower()
        if not _SOURCE.match(source):
            raise LinkError(
                "a source is 1 to 48 lowercase letters, digits, '-' or '_' (e.g. poster-townhall)"
            )
    payload = f"{slug}-{source}" if source else slug
    if not _PAYLOAD.match(payload):
        raise LinkError(
            f"the start payload {payload!r} must be 1 to 64 characters of A-Z, a-z, 0-9, '_' "
            "and '-'"
        )
    return payload


def deep_link(bot_username: str, slug: str, source: str | None = None) -> str:
    return f"https://t.me/{bot_username.lstrip('@')}?start={start_payload(slug, source)}"


async def fetch_username(token: str, api_url: str) -> str:
    """The bot's username, from getMe."""
    bot = Bot(token, base_url=api_url, request=HTTPXRequest(connection_pool_size=1))
    async with bot:
        username = bot.username
    if not username:
        raise LinkError("Telegram did not return a username for this bot")
    return username
