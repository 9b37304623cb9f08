"""The lifecycle of a consultation and its schedule: what happens when, and running it once.

A consultation goes draft → scheduled → open → closed (→ archived). Its dates are UTC instants
shown in its time zone; ``ConsultationInfo.phase(now)`` alone decides what is allowed, so the
permissions change at the exact instant even if the scheduler is late. The scheduler moves
``status`` and posts the news.

The schedule is rows of ``scheduled_action`` in UTC. ``plan(info)`` derives the opening, the
closing, the results and the reminders from the consultation (its dates and its ``reminders``
policy); ``Lifecycle.sync`` keeps the rows equal to the plan (an extension moves the closing
and the reminders before it). Moderators add announcements and manual reminders.

``ScheduleRunner.run`` executes one due action in ONE transaction that first inserts the
(action, due time) row of ``action_run``: whatever the number of workers, restarts or timers
firing twice, each action runs once. Opening, closing, results and announcements run however
late; a reminder runs only within a grace period, otherwise it is skipped (and logged).

Local times are converted with ``zoneinfo`` at the edges: "7 days before closing" and "every
week" keep the local wall-clock time across daylight-saving changes, and a local time that
does not exist or happens twice is either refused (moderator input) or mapped to one instant.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot import errors
from bot.consultation_file import ReminderPolicy
from bot.domain import ConsultationInfo, Phase
from bot.i18n import N_
from bot.services import Services
from storage.db import Database
from storage.models import Consultation
from storage.models_scheduler import ScheduledAction
from storage.repositories import Repos
from storage.repositories_scheduler import SchedulerRepo

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Kind(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    RESULTS = "results"
    REMINDER = "reminder"
    ANNOUNCE = "announce"


# Order of actions due at the same instant: close before results, both before reminders.
PRIORITY = {Kind.OPEN: 0, Kind.CLOSE: 1, Kind.RESULTS: 2, Kind.ANNOUNCE: 3, Kind.REMINDER: 4}
DERIVED = (Kind.OPEN, Kind.CLOSE, Kind.RESULTS)
MAX_WEEKLY = 520  # ten years of weekly reminders


# --------------------------------------------------------------------------- errors


class BadDateTime(errors.DomainError):
    msgid = N_("I could not read “{text}”: write a date and a time such as 2019-09-30 18:00.")


class NonexistentTime(errors.DomainError):
    msgid = N_(
        "{time} does not exist in {zone} on that day (the clocks go forward): choose another time."
    )


class AmbiguousTime(errors.DomainError):
    msgid = N_(
        "{time} happens twice in {zone} on that day (the clocks go back): choose another time."
    )


class NotInFuture(errors.DomainError):
    msgid = N_("{date} is in the past: choose a later date.")


class NotOpenNow(errors.DomainError):
    msgid = N_("This is only possible while the consultation is open.")


class ExtendEarlier(errors.DomainError):
    msgid = N_(
        "The consultation already closes on {date}. To extend it, give a later date; "
        "to close it now, use /close."
    )


class EmptyAnnouncement(errors.DomainError):
    msgid = N_("The announcement is empty. Usage: /announce [at DATE TIME] TEXT")


# --------------------------------------------------------------------------- time helpers


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall-clock time → UTC. A time in a spring-forward gap maps to the instant
    after the change (02:30 → 03:30 CEST); a repeated time to its first occurrence."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def shift_days(instant: datetime, zone: ZoneInfo, days: int) -> datetime:
    """The same local wall-clock time ``days`` later (earlier if negative)."""
    local = instant.astimezone(zone).replace(tzinfo=None)
    return to_utc(local + timedelta(days=days), zone)


def strict_local(local: datetime, zone: ZoneInfo) -> datetime:
    """A local time typed by a moderator → UTC, refusing times that do not exist or happen
    twice on that day."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        hhmm = local.strftime("%H:%M")
        if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
            raise NonexistentTime(time=hhmm, zone=zone.key)
        raise AmbiguousTime(time=hhmm, zone=zone.key)
    return first.astimezone(UTC)


_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME_RE = re.compile(r"(\d{1,2})[:h](\d{2})")


def parse_local(
    date_text: str, time_text: str | None, zone: ZoneInfo, default_time: time | None = None
) -> datetime:
    """``2019-09-30`` [``18:00``] in ``zone`` → UTC (strict about DST changes)."""
    shown = f"{date_text} {time_text or ''}".strip()
    d = _DATE_RE.fullmatch(date_text.strip())
    if d is None:
        raise BadDateTime(text=shown[:40])
    if time_text:
        t = _TIME_RE.fullmatch(time_text.strip().lower())
        if t is None:
            raise BadDateTime(text=shown[:40])
        hour, minute = int(t[1]), int(t[2])
    elif default_time is not None:
        hour, minute = default_time.hour, default_time.minute
    else:
        raise BadDateTime(text=shown[:40])
    try:
        local = datetime(int(d[1]), int(d[2]), int(d[3]), hour, minute)
    except ValueError:
        raise BadDateTime(text=shown[:40]) from None
    return strict_local(local, zone)


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def of(cls, policy: ReminderPolicy | None) -> QuietHours | None:
        if policy is None:
            return None
        quiet = policy.quiet_range()
        if quiet is None:
            return None
        (sh, sm), (eh, em) = quiet
        return cls(time(sh, sm), time(eh, em))

    @classmethod
    def parse(cls, text: str | None) -> QuietHours | None:
        if not text:
            return None
        start, _, end = text.partition("-")
        sh, sm = start.split(":")
        eh, em = end.split(":")
        return cls(time(int(sh), int(sm)), time(int(eh), int(em)))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, instant: datetime, zone: ZoneInfo) -> bool:
        t = instant.astimezone(zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def end_after(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """The end of the quiet period containing ``instant`` (UTC)."""
        local = instant.astimezone(zone).replace(tzinfo=None)
        end = datetime.combine(local.date(), self.end)
        if end <= local:
            end += timedelta(days=1)
        return to_utc(end, zone)

    def start_before(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """The start of the quiet period containing ``instant`` (UTC)."""
        local = instant.astimezone(zone).replace(tzinfo=None)
        start = datetime.combine(local.date(), self.start)
        if start > local:
            start -= timedelta(days=1)
        return to_utc(start, zone)

    def outside(self, instant: datetime, zone: ZoneInfo, not_after: datetime) -> datetime:
        """``instant`` if it is not in quiet hours; else the end of the quiet period, or, if
        that is not before ``not_after``, the last minute before the quiet period began."""
        if not self.contains(instant, zone):
            return instant
        end = self.end_after(instant, zone)
        if end < not_after:
            return end
        return self.start_before(instant, zone) - timedelta(minutes=1)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Planned:
    key: str
    kind: Kind
    due_at: datetime
    params: dict[str, object] = field(default_factory=dict)


def plan(info: ConsultationInfo) -> list[Planned]:
    """Everything the consultation's dates and reminders policy call for."""
    if info.status in (Phase.DRAFT, Phase.ARCHIVED):
        return []
    out = [
        Planned("open", Kind.OPEN, info.opens_at),
        Planned("close", Kind.CLOSE, info.closes_at),
        Planned("results", Kind.RESULTS, info.closes_at),
    ]
    policy = info.document.reminders
    if policy is None:
        return out
    zone = ZoneInfo(info.timezone)
    quiet = QuietHours.of(policy)
    wanted: list[tuple[str, datetime, dict[str, object]]] = []
    for text, amount, unit in policy.offsets():
        if unit == "d":
            due = shift_days(info.closes_at, zone, -amount)
        else:
            due = info.closes_at - timedelta(hours=amount)
        wanted.append((f"remind:before:{text}", due, {"rule": "before_close", "offset": text}))
    if policy.weekly_while_open:
        for week in range(1, MAX_WEEKLY + 1):
            due = shift_days(info.opens_at, zone, 7 * week)
            if due >= info.closes_at:
                break
            wanted.append((f"remind:weekly:{week}", due, {"rule": "weekly", "week": week}))
    for key, due, params in wanted:
        if quiet is not None:
            due = quiet.outside(due, zone, info.closes_at)
        if info.opens_at < due < info.closes_at:
            out.append(Planned(key, Kind.REMINDER, due, params))
    return out


def is_derived(key: str) -> bool:
    """Rows that ``plan`` owns (the others are moderators' announcements and reminders)."""
    return key in ("open", "close", "results") or key.startswith(
        ("remind:before:", "remind:weekly:")
    )


def grace_for(kind: str, reminder_grace: timedelta) -> timedelta | None:
    """How late an action may still run: None = always (opening, closing, results,
    announcements); reminders only within ``reminder_grace``."""
    return reminder_grace if kind == Kind.REMINDER else None


def action_name(row: ScheduledAction) -> str:
    return f"{row.consultation_id}:{row.key}"


# --------------------------------------------------------------------------- lifecycle


class Lifecycle:
    """Lifecycle and schedule operations inside one unit of work (the caller commits)."""

    def __init__(self, repos: Repos, now: datetime) -> None:
        self.repos, self.now = repos, now
        self.sched = SchedulerRepo(repos.db, repos.session)
        self.services = Services(repos, now)

    def info(self, consultation_id: int) -> ConsultationInfo:
        return self.services.consultations.get(consultation_id)

    def sync(self, info: ConsultationInfo) -> bool:
        """Make the derived rows of the schedule equal to ``plan(info)``. Done rows stay done,
        except reminders whose time moved into the future (after an extension). Returns True
        if anything changed."""
        now = self.now
        planned = {p.key: p for p in plan(info)}
        rows = {
            r.key: r
            for r in self.sched.actions(consultation_id=info.id, statuses=None)
            if is_derived(r.key)
        }
        changed = False
        for key, p in planned.items():
            row = rows.get(key)
            if row is None:
                self.repos.session.add(
                    ScheduledAction(
                        consultation_id=info.id,
                        key=key,
                        kind=str(p.kind),
                        due_at=p.due_at,
                        params=dict(p.params),
                        created_at=now,
                        updated_at=now,
                    )
                )
                changed = True
                continue
            if row.due_at == p.due_at and row.status != "cancelled":
                continue
            if row.status in ("pending", "cancelled") or (
                p.kind == Kind.REMINDER and p.due_at > now and row.due_at != p.due_at
            ):
                row.due_at, row.status, row.params = p.due_at, "pending", dict(p.params)
                row.note, row.updated_at = None, now
                self.repos.session.add(row)
                changed = True
        for key, row in rows.items():
            if key not in planned and row.status == "pending":
                row.status, row.note, row.updated_at = "cancelled", "no longer planned", now
                self.repos.session.add(row)
                changed = True
        if changed:
            self.repos.session.flush()
        return changed

    def sync_all(self) -> bool:
        changed = False
        for row in self.repos.consultations.all():
            changed |= self.sync(self.services.consultations.info(row))
        return changed

    def upcoming(self, info: ConsultationInfo) -> list[ScheduledAction]:
        return list(self.sched.actions(consultation_id=info.id))

    def _row(self, info: ConsultationInfo) -> Consultation:
        row = self.repos.consultations.get(info.id)
        assert row is not None
        return row

    def extend(self, info: ConsultationInfo, closes_at: datetime) -> ConsultationInfo:
        """Move the closing date of an open consultation later; the schedule follows."""
        if info.phase(self.now) != Phase.OPEN:
            raise NotOpenNow()
        if closes_at <= self.now:
            raise NotInFuture(date=_shown(closes_at, info.timezone))
        if closes_at <= info.closes_at:
            raise ExtendEarlier(date=_shown(info.closes_at, info.timezone))
        row = self._row(info)
        row.closes_at, row.updated_at = closes_at, self.now
        self.repos.session.add(row)
        self.repos.session.flush()
        new = self.services.consultations.info(row)
        self.sync(new)
        return new

    def close_now(self, info: ConsultationInfo) -> ConsultationInfo:
        """Close an open consultation now: the closing and the results become due."""
        if info.phase(self.now) != Phase.OPEN:
            raise NotOpenNow()
        row = self._row(info)
        row.closes_at, row.updated_at = self.now, self.now
        self.repos.session.add(row)
        self.repos.session.flush()
        new = self.services.consultations.info(row)
        self.sync(new)
        return new

    def set_status(self, info: ConsultationInfo, status: str) -> ConsultationInfo:
        """Moves a moderator or operator may make: draft ⇄ scheduled (before opening),
        closed → archived."""
        phase = info.phase(self.now)
        allowed = {
            "draft": info.status == "scheduled" and phase == Phase.UPCOMING,
            "scheduled": info.status == "draft" and self.now < info.opens_at,
            "archived": phase == Phase.CLOSED,
        }
        if not allowed.get(status, False):
            raise errors.DomainError()
        row = self._row(info)
        row.status, row.updated_at = status, self.now
        self.repos.session.add(row)
        self.repos.session.flush()
        new = self.services.consultations.info(row)
        self.sync(new)
        return new

    def schedule(
        self,
        info: ConsultationInfo,
        kind: Kind,
        due_at: datetime,
        params: dict[str, object],
        by: int | None,
    ) -> ScheduledAction:
        prefix = "announce" if kind == Kind.ANNOUNCE else "remind:manual"
        row = ScheduledAction(
            consultation_id=info.id,
            key=f"{prefix}:{uuid.uuid4().hex[:12]}",
            kind=str(kind),
            due_at=due_at,
            params=params,
            created_by=by,
            created_at=self.now,
            updated_at=self.now,
        )
        self.repos.session.add(row)
        self.repos.session.flush()
        return row


def _shown(instant: datetime, zone: str) -> str:
    from bot.i18n import fmt_datetime

    return fmt_datetime(instant, zone)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SchedulerConfig:
    reminder_grace: timedelta = timedelta(hours=1)
    worker: str = "worker"
    # Administrators' platform ids ("telegram:42"): they get the results' files.
    admins: frozenset[str] = frozenset()
    # (seed, minimum votes) of the opinion groups published with the results (issue 15).
    opinions: tuple[int, int] = (15, 5)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    action_id: int
    action: str
    kind: str
    due_at: datetime
    outcome: str  # done | skipped | already-ran | not-pending | not-due
    broadcast_id: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ActionView:
    id: int
    consultation_id: int
    key: str
    kind: str
    due_at: datetime


class ScheduleRunner:
    """The schedule against the database, each call its own transaction (like the engine).
    ``tick()`` runs whatever is due: the deterministic entry point used by tests and by
    ``parlons schedule tick``; the APScheduler service calls ``run`` from its timers."""

    def __init__(self, db: Database, clock: Clock, config: SchedulerConfig | None = None) -> None:
        self.db, self.clock = db, clock
        self.config = config or SchedulerConfig()

    def sync_all(self) -> bool:
        with self.db.session() as session:
            return Lifecycle(Repos(self.db, session), self.clock()).sync_all()

    def signature(self) -> tuple[object, ...]:
        """Changes whenever the schedule or a consultation changes."""
        with self.db.session() as session:
            repos = Repos(self.db, session)
            return (*SchedulerRepo(self.db, session).signature(), *repos.consultations.signature())

    def pending(self) -> list[ActionView]:
        with self.db.session() as session:
            rows = SchedulerRepo(self.db, session).actions()
            return [
                ActionView(r.id, r.consultation_id, r.key, r.kind, r.due_at)
                for r in rows
                if r.id is not None
            ]

    def due(self, now: datetime | None = None) -> list[int]:
        now = now or self.clock()
        views = [v for v in self.pending() if v.due_at <= now]
        views.sort(key=lambda v: (v.due_at, PRIORITY.get(Kind(v.kind), 9), v.id))
        return [v.id for v in views]

    def tick(self, now: datetime | None = None) -> list[RunOutcome]:
        self.sync_all()
        return [self.run(action_id, now) for action_id in self.due(now)]

    def run(self, action_id: int, now: datetime | None = None) -> RunOutcome:
        from bot.broadcasts import BroadcastService

        with self.db.session() as session:
            now = now or self.clock()
            repos = Repos(self.db, session)
            sched = SchedulerRepo(self.db, session)
            row = sched.action(action_id, lock=True)
            if row is None or row.status != "pending":
                return RunOutcome(action_id, "?", "?", now, "not-pending")
            name = action_name(row)

            def outcome(result: str, **kw: object) -> RunOutcome:
                return RunOutcome(action_id, name, row.kind, row.due_at, result, **kw)  # type: ignore[arg-type]

            if row.due_at > now:
                return outcome("not-due")
            late = now - row.due_at
            grace = grace_for(row.kind, self.config.reminder_grace)
            if grace is not None and late > grace:
                missed = f"missed by {_duration(late)} (grace {_duration(grace)})"
                return self._skip(sched, row, now, missed, outcome)
            if not sched.insert_run(name, row.due_at, now, "done", self.config.worker):
                row.status, row.updated_at, row.note = "done", now, "already ran"
                session.add(row)
                return outcome("already-ran")
            lifecycle = Lifecycle(repos, now)
            info = lifecycle.info(row.consultation_id)
            broadcasts = BroadcastService(
                repos, now, admins=self.config.admins, opinions=self.config.opinions
            )
            broadcast_id: int | None = None
            note: str | None = None
            kind = Kind(row.kind)
            if kind == Kind.OPEN:
                info = self._set_status(lifecycle, info, "open", ("scheduled",))
                if info.phase(now) == Phase.OPEN:
                    broadcast_id = broadcasts.opening(info, action=name)
                else:
                    note = "opened after its closing date: no news posted"
            elif kind == Kind.CLOSE:
                self._set_status(lifecycle, info, "closed", ("scheduled", "open"))
            elif kind == Kind.RESULTS:
                info = self._set_status(lifecycle, info, "closed", ("scheduled", "open"))
                broadcast_id = broadcasts.results(info, action=name)
            elif kind == Kind.ANNOUNCE:
                broadcast_id = broadcasts.announcement(
                    info, dict(row.params.get("texts") or {}), action=name, by=row.created_by
                )
            elif kind == Kind.REMINDER:
                policy = info.document.reminders or ReminderPolicy()
                quiet = QuietHours.of(policy)
                if info.phase(now) != Phase.OPEN:
                    note = "consultation not open"
                elif quiet is not None and quiet.contains(now, ZoneInfo(info.timezone)):
                    note = "quiet hours"
                else:
                    broadcast_id = broadcasts.reminders(info, policy, action=name)
                    if broadcast_id is None:
                        note = "nobody to remind"
                if note in ("consultation not open", "quiet hours"):
                    self._mark(sched, name, row, now, "skipped")
                    row.status, row.note, row.updated_at = "skipped", note, now
                    session.add(row)
                    log.info("reminder %s skipped: %s", name, note)
                    return outcome("skipped", note=note)
            row.status, row.ran_at, row.updated_at, row.note = "done", now, now, note
            session.add(row)
            log.info("ran %s (due %s) %s", name, row.due_at.isoformat(), note or "")
            return outcome("done", broadcast_id=broadcast_id, note=note)

    def _skip(
        self,
        sched: SchedulerRepo,
        row: ScheduledAction,
        now: datetime,
        note: str,
        outcome: Callable[..., RunOutcome],
    ) -> RunOutcome:
        name = action_name(row)
        if not sched.insert_run(name, row.due_at, now, "skipped", self.config.worker):
            row.status, row.note = "done", "already ran"
            sched.s.add(row)
            return outcome("already-ran")
        row.status, row.note, row.updated_at = "skipped", note, now
        sched.s.add(row)
        log.warning("skipped %s due %s: %s", name, row.due_at.isoformat(), note)
        return outcome("skipped", note=note)

    @staticmethod
    def _mark(
        sched: SchedulerRepo, name: str, row: ScheduledAction, now: datetime, how: str
    ) -> None:
        sched.set_run_outcome(name, row.due_at, how)

    @staticmethod
    def _set_status(
        lifecycle: Lifecycle, info: ConsultationInfo, status: str, from_: Iterable[str]
    ) -> ConsultationInfo:
        if info.status not in from_:
            return info
        row = lifecycle._row(info)
        row.status, row.updated_at = status, lifecycle.now
        lifecycle.repos.session.add(row)
        lifecycle.repos.session.flush()
        return lifecycle.services.consultations.info(row)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
