"""Feature routers, composed in one place."""

from __future__ import annotations

from collections.abc import Iterable

from bot.handlers import ideas, onboarding, participation
from bot.router import Dispatcher


def build_dispatcher(*, admins: Iterable[str] = ()) -> Dispatcher:
    return Dispatcher(
        [onboarding.router, participation.router, ideas.router],
        admins=admins,
        fallback_text=onboarding.fallback,
    )
