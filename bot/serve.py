"""``parlons run``: start every configured channel and the scheduler in one event loop.

Each adapter package exposes ``build_service(app, runtime) -> ChannelService`` and the scheduler
``build_service(app, runtime, channels) -> Service``. This module is the composition root's
runtime half: it imports adapters lazily, only when their settings are present.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Protocol

from bot.app import App
from bot.channels import Channel
from bot.runtime import Runtime

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class ChannelService(Service, Protocol):
    channel: Channel


def configured_channels(app: App, runtime: Runtime) -> list[Any]:
    """The configured channels' services (each with ``name``, ``channel``, ``run``)."""
    services: list[Any] = []
    settings = app.settings
    if settings.telegram_token is not None:
        from adapters.telegram import build_service as telegram

        services.append(telegram(app, runtime))
    if settings.matrix_homeserver:
        from adapters.matrix import build_service as matrix

        services.append(matrix(app, runtime))
    return services


async def serve(app: App, *, with_scheduler: bool = True) -> None:
    runtime = Runtime(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    channels = configured_channels(app, runtime)
    services: list[Service] = list(channels)
    if with_scheduler:
        try:
            from scheduler import build_service as scheduler
        except ImportError:
            log.warning("no scheduler available")
        else:
            services.append(
                scheduler(app, runtime, {c.channel.platform: c.channel for c in channels})
            )
    if not channels:
        log.warning("no channel configured: set PARLONS_TELEGRAM_TOKEN or PARLONS_MATRIX_*")
    log.info("starting %s", ", ".join(s.name for s in services) or "nothing")
    try:
        await asyncio.gather(*(s.run(stop) for s in services))
    finally:
        runtime.close()
