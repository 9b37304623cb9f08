"""``python -m adapters.matrix``: run the Matrix channel alone (no scheduler), configured by the
``PARLONS_*`` settings. ``parlons run`` runs it together with the other channels."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from adapters.matrix import build_service
from bot.app import build_app
from bot.runtime import Runtime
from bot.settings import Settings


async def _serve() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = build_app(settings)
    runtime = Runtime(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await build_service(app, runtime).run(stop)
    finally:
        runtime.close()
        app.close()


def main() -> None:
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
