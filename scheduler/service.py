"""The scheduler service of ``parlons run``: leader election, APScheduler timers built from our
rows, and one broadcast lane per channel.

APScheduler 3.11 keeps its jobs in memory only: they are rebuilt from the ``scheduled_action``
rows at start and whenever the rows or the consultations change (checked every
``poll_interval`` seconds), so a moderator's /extend in any worker moves the timers. A job only
calls ``ScheduleRunner.run(action id)``, which decides (and records, exactly once) what
happens. Misfire policy per kind: opening, closing, results and announcements run however late
(``misfire_grace_time=None``); reminders within the configured grace, otherwise they are
skipped and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, timedelta

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot.answers import compute_pending
from bot.app import App
from bot.broadcasts import BroadcastOutbox
from bot.channels import Channel, Pace
from bot.privacy import Housekeeping, HousekeepingReport
from bot.runtime import Runtime
from bot.schedule import RunOutcome, SchedulerConfig, ScheduleRunner, grace_for
from scheduler.leader import Leadership, leadership_for
from scheduler.sender import BroadcastSender

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


def pace_for(app: App, platform: str) -> Pace:
    s = app.settings
    if platform == "telegram":
        return Pace(
            s.telegram_broadcast_per_second,
            s.telegram_broadcast_chat_interval,
            s.telegram_broadcast_group_per_minute,
        )
    if platform == "matrix":
        return Pace(
            s.matrix_broadcast_per_second,
            s.matrix_broadcast_chat_interval,
            s.matrix_broadcast_group_per_minute,
        )
    return Pace(s.broadcast_per_second, 0.0, 0.0)


class SchedulerService:
    name = "scheduler"

    def __init__(
        self,
        app: App,
        runtime: Runtime,
        channels: dict[str, Channel],
        *,
        leadership: Leadership | None = None,
        poll_interval: float | None = None,
        leader_retry: float | None = None,
        paces: dict[str, Pace] | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.runtime = runtime
        self.channels = channels
        self.config = SchedulerConfig(
            reminder_grace=timedelta(seconds=settings.scheduler_reminder_grace),
            worker=worker_name(),
            admins=frozenset(app.settings.admins),
            opinions=(settings.opinion_groups_seed, settings.opinion_groups_min_votes),
        )
        self.runner = ScheduleRunner(app.db, app.clock, self.config)
        self.outbox = BroadcastOutbox(
            app.db,
            app.clock,
            typed_command=app.dispatcher.typed_command,
            durable_interval=settings.broadcast_durable_interval,
        )
        self.senders = {
            platform: BroadcastSender(
                runtime,
                channel,
                self.outbox,
                (paces or {}).get(platform) or pace_for(app, platform),
            )
            for platform, channel in channels.items()
        }
        self.leadership = leadership or leadership_for(app.db.url)
        self.poll_interval = (
            settings.scheduler_poll_interval if poll_interval is None else poll_interval
        )
        self.leader_retry = (
            settings.scheduler_leader_retry if leader_retry is None else leader_retry
        )
        self.is_leader = asyncio.Event()
        self.outcomes: list[RunOutcome] = []
        self._signature: tuple[object, ...] | None = None
        self._aps: AsyncIOScheduler | None = None
        # Actions whose run raised: retried with a growing delay.
        self._failures: dict[int, int] = {}
        # Actions being run now: a rebuild meanwhile does not arm them again.
        self._running: set[int] = set()

    # ------------------------------------------------------------------ deterministic entry

    async def tick(self) -> list[RunOutcome]:
        """Run what is due now (by the app's clock), then send every broadcast: tests drive
        the scheduler with this and a fake clock."""
        outcomes = await self.runtime.call(self.runner.tick)
        self.outcomes.extend(outcomes)
        for sender in self.senders.values():
            await sender.flush()
        return outcomes

    # ------------------------------------------------------------------ the service

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self.leadership.acquire():
                log.info("%s leads the schedule", self.config.worker)
                try:
                    await self._lead(stop)
                finally:
                    self.is_leader.clear()
                    await self.leadership.release()
                    log.info("%s no longer leads the schedule", self.config.worker)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.leader_retry)

    async def _lead(self, stop: asyncio.Event) -> None:
        lead_stop = asyncio.Event()
        aps = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        aps.add_listener(self._missed, EVENT_JOB_MISSED)
        self._aps = aps
        tasks: list[asyncio.Task[None]] = []
        try:
            aps.start()
            self._signature = None
            await self._refresh()
            tasks = [
                asyncio.create_task(sender.run(lead_stop), name=f"broadcast-{platform}")
                for platform, sender in self.senders.items()
            ]
            tasks.append(asyncio.create_task(self._housekeeping(lead_stop), name="privacy"))
            tasks.append(asyncio.create_task(self._opinions(lead_stop), name="opinions"))
            self.is_leader.set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
                if stop.is_set():
                    break
                if not await self.leadership.check():
                    log.error("lost the leadership: stopping the schedule here")
                    break
                try:
                    await self._refresh()
                except Exception:
                    log.exception("could not refresh the schedule")
        finally:
            lead_stop.set()
            aps.shutdown(wait=False)
            self._aps = None
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            await self.runtime.call(self.outbox.close)

    async def _refresh(self) -> None:
        """Rebuild the timers when the rows (or the consultations) changed."""
        signature = await self.runtime.call(self.runner.signature)
        if signature == self._signature:
            return
        await self.runtime.call(self.runner.sync_all)
        views = await self.runtime.call(self.runner.pending)
        aps = self._aps
        if aps is None:
            return
        aps.remove_all_jobs()
        now = self.app.clock()
        for view in views:
            if view.id in self._running:
                continue
            grace = grace_for(view.kind, self.config.reminder_grace)
            run_date = view.due_at
            failures = self._failures.get(view.id)
            if failures:
                run_date = max(run_date, now + timedelta(seconds=min(300, 2**failures)))
            aps.add_job(
                self._fire,
                DateTrigger(run_date=run_date, timezone=UTC),
                args=[view.id],
                id=str(view.id),
                name=f"{view.consultation_id}:{view.key}",
                misfire_grace_time=None if grace is None else int(grace.total_seconds()),
                replace_existing=True,
            )
        self._signature = await self.runtime.call(self.runner.signature)
        log.info("schedule rebuilt: %d timers", len(views))

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """The leader keeps the privacy notice's promises: citizens silent for the retention
        period are erased, handled inbox/outbox rows past their retention are pruned, and what
        erasures left behind is purged — at start, then every ``privacy_housekeeping_hours``."""
        interval = self.app.settings.privacy_housekeeping_hours * 3600
        while not stop.is_set():
            try:
                report = await self.housekeep_async(stop)
                if report.erased or report.pruned:
                    log.info(
                        "privacy: %d inactive citizens erased, %d old messages pruned",
                        report.erased,
                        report.pruned,
                    )
            except Exception:
                log.exception("privacy housekeeping failed; retried at the next round")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _opinions(self, stop: asyncio.Event) -> None:
        """Opinion groups a moderator asked for (/groups) are computed here, in a thread of
        their own: neither the event path nor the runtime's database thread waits for them
        (bot.answers.compute_pending; the result is cached with its votes' fingerprint)."""
        while not stop.is_set():
            try:
                done = await asyncio.to_thread(
                    compute_pending, self.app.db, self.app.settings, self.app.clock()
                )
                if done:
                    log.info("opinion groups computed for consultations %s", done)
            except Exception:
                log.exception("opinion groups: computing failed; retried at the next round")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)

    async def housekeep_async(self, stop: asyncio.Event) -> HousekeepingReport:
        """One round of housekeeping in small committed batches, each its own call on the
        runtime (other events are processed in between); ``stop`` is checked between batches,
        and a round stopped half-way is finished by the next one."""
        housekeeping = Housekeeping(self.app.db, self.app.clock, self.app.settings)
        report = HousekeepingReport()
        for name, step, batch in housekeeping.steps():
            while not stop.is_set():
                done = await self.runtime.call(step)
                if name == "expire":
                    report.erased += done
                else:
                    report.pruned += done
                if done < batch:
                    break
            if stop.is_set():
                return report
        await self.runtime.call(housekeeping.sweep_step)
        report.finished = True
        return report

    def housekeep(self) -> int:
        """One whole round of privacy housekeeping; returns how many citizens were erased."""
        return Housekeeping(self.app.db, self.app.clock, self.app.settings).run().erased

    def _missed(self, event: JobExecutionEvent) -> None:
        """APScheduler skipped a reminder past its grace: record the skip (the runner logs
        it and writes the action_run row)."""
        with contextlib.suppress(ValueError):
            asyncio.get_running_loop().create_task(self._fire(int(event.job_id)))

    async def _fire(self, action_id: int) -> None:
        if action_id in self._running:
            return
        self._running.add(action_id)
        try:
            outcome = await self.runtime.call(self.runner.run, action_id)
        except Exception:
            log.exception("scheduled action %s failed: it will be retried", action_id)
            self._failures[action_id] = self._failures.get(action_id, 0) + 1
            self._signature = None  # rebuild (and so retry) on the next poll
            return
        finally:
            self._running.discard(action_id)
        self._failures.pop(action_id, None)
        self.outcomes.append(outcome)
        if outcome.broadcast_id is not None:
            for sender in self.senders.values():
                sender.wake.set()
