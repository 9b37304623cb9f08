"""The scheduler: APScheduler 3.11 timers driven by our own UTC rows, leader election on
PostgreSQL, and the paced broadcast lanes. Domain decisions live in ``bot.schedule`` and
``bot.broadcasts``; this package only turns them into timers and sends.

``build_service(app, runtime, channels)`` is what ``parlons run`` starts."""

from __future__ import annotations

from bot.app import App
from bot.channels import Channel
from bot.runtime import Runtime
from scheduler.service import SchedulerService

__all__ = ["SchedulerService", "build_service"]


def build_service(app: App, runtime: Runtime, channels: dict[str, Channel]) -> SchedulerService:
    return SchedulerService(app, runtime, channels)
