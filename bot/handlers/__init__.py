"""Feature routers, composed in one place."""

from __future__ import annotations

from collections.abc import Iterable

from bot.handlers import (
    admin,
    answers,
    guards,
    ideas,
    legible,
    moderation,
    onboarding,
    participation,
    privacy,
    scheduling,
)
from bot.router import Dispatcher
from bot.settings import Settings


def build_dispatcher(
    *, admins: Iterable[str] = (), settings: Settings | None = None
) -> Dispatcher:
    return Dispatcher(
        [
            onboarding.router,
            participation.router,
            ideas.router,
            legible.router,
            scheduling.router,
            moderation.router,
            answers.router,
            privacy.router,
            admin.router,
        ],
        admins=admins,
        fallback_text=onboarding.fallback,
        middlewares=[scheduling.remember_private_chat, *guards.MIDDLEWARES],
        gated=guards.GATED,
        settings=settings,
    )
