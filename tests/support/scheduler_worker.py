"""A scheduler worker process for crash tests: ``parlons run``'s scheduler service with a
channel that appends every send to a file (see ``FileChannel``).

    python -m tests.support.scheduler_worker --db URL --out FILE [--delay S] [--poll S]

Stops on SIGTERM; tests also SIGKILL it to simulate a crash."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from bot.app import build_app
from bot.channels import Pace
from bot.runtime import Runtime
from bot.settings import Settings
from scheduler.service import SchedulerService
from tests.support.scheduling import ADMIN, FileChannel


async def main(args: argparse.Namespace) -> None:
    # The tests' citizens live in 2019 (a fake clock) while this process runs on the real
    # clock: a long retention keeps the privacy housekeeping from erasing them as inactive.
    settings = Settings(database_url=args.db, admins=[ADMIN], privacy_retention_months=1200)
    app = build_app(settings, migrate=False)
    runtime = Runtime(app)
    channel = FileChannel(Path(args.out), delay=args.delay)
    service = SchedulerService(
        app,
        runtime,
        {channel.platform: channel},
        poll_interval=args.poll,
        leader_retry=args.poll,
        paces={channel.platform: Pace(args.rate, 0.0, 6000.0)},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.run(stop)
    finally:
        runtime.close()
        app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--log", default="INFO")
    ns = parser.parse_args()
    logging.basicConfig(level=ns.log, format="%(asctime)s %(process)d %(name)s: %(message)s")
    asyncio.run(main(ns))
