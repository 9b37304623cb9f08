"""The Telegram channel: python-telegram-bot inside our event loop, a durable inbox in front.

``build_service(app, runtime)`` is what ``parlons run`` calls when ``PARLONS_TELEGRAM_TOKEN``
is set. See the README ("Run on Telegram") for running it, and the modules for the details:
``translate`` (updates → events), ``channel`` (messages → Bot API calls), ``commands`` (the
commands menu) and ``service`` (polling or webhook, processing, sending).
"""

from __future__ import annotations

from adapters.telegram.channel import TelegramChannel, capabilities, split_text, telegram_pace
from adapters.telegram.commands import set_chat_commands, set_default_commands
from adapters.telegram.service import TelegramService, webhook_secret_for
from adapters.telegram.translate import PLATFORM, translate
from bot.app import App
from bot.channels import Pace
from bot.runtime import Runtime

__all__ = [
    "PLATFORM",
    "TelegramChannel",
    "TelegramService",
    "build_service",
    "capabilities",
    "set_chat_commands",
    "set_default_commands",
    "split_text",
    "telegram_pace",
    "translate",
    "webhook_secret_for",
]


def build_service(app: App, runtime: Runtime) -> TelegramService:
    settings = app.settings
    if settings.telegram_token is None:
        raise ValueError("PARLONS_TELEGRAM_TOKEN is not set")
    secret = settings.telegram_webhook_secret
    return TelegramService(
        app,
        runtime,
        token=settings.telegram_token.get_secret_value(),
        api_url=settings.telegram_api_url,
        file_url=settings.telegram_file_url,
        mode=settings.telegram_mode,
        webhook_url=settings.telegram_webhook_url,
        webhook_secret=secret.get_secret_value() if secret is not None else None,
        webhook_listen=settings.telegram_webhook_listen,
        admins=settings.admins,
        default_locale=settings.default_locale,
        pace=Pace(
            per_second=settings.telegram_pace_per_second,
            per_chat_interval=settings.telegram_pace_chat_interval,
            per_group_per_minute=20.0,
        ),
    )
