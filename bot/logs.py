"""Logging setup for the ``parlons`` command, with one filter that keeps secrets out of every
log line.

Libraries log what they send at DEBUG (python-telegram-bot the parameters of ``setWebhook``
with its ``secret_token``, httpx and aiohttp request URLs with the bot token, matrix-nio the
access token in query strings), so redaction cannot rely on each caller: ``RedactSecrets`` is
installed on every handler of the root logger and rewrites the message, its arguments and the
formatted traceback of each record before any handler formats it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import quote

from bot.settings import Settings
from storage.errors import url_password

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "<redacted>"
# Shorter values are not secrets worth hiding (and would mangle ordinary words).
MIN_SECRET_LENGTH = 6


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold (tokens, passwords, keys, the database password)."""
    values: list[str] = []
    for name in Settings.model_fields:
        value = getattr(settings, name, None)
        if value is not None and hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    try:
        password = url_password(settings.database_url)
    except Exception:  # an invalid URL is reported elsewhere
        password = None
    if password:
        values.append(str(password))
    return values


def _variants(secret: str) -> set[str]:
    """The secret as it may appear: raw, and percent-encoded in URLs and form bodies."""
    return {secret, quote(secret, safe=""), quote(secret, safe="/:")}


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({v for s in secrets for v in _variants(s)}, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactSecrets(logging.Filter):
    """Replaces the configured secrets in a record's message, arguments and traceback."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        clean = redact(text, self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def install(redactor: RedactSecrets, logger: logging.Logger | None = None) -> None:
    """Put ``redactor`` on every handler of ``logger`` (the root logger by default), replacing
    any redactor installed before (settings may change between two runs in one process)."""
    for handler in (logger or logging.getLogger()).handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)


def configure_logging(
    settings: Settings, *, stream: TextIO | None = None, extra_secrets: Iterable[str] = ()
) -> RedactSecrets:
    """Log to stderr at ``settings.log_level`` with the secrets redacted. Returns the filter
    (callers may ``add`` secrets derived later, e.g. a webhook secret derived from a token)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    redactor = RedactSecrets([*secrets_of(settings), *extra_secrets])
    install(redactor)
    return redactor


def protect(*secrets: str | None) -> None:
    """Add secrets learnt at run time (an access token from a login) to the redactor already
    installed on the root logger's handlers (see ``configure_logging``)."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactSecrets):
                found.add(*secrets)
