"""Flood control: per-citizen quotas kept in the database, so that they hold with concurrent
senders and several workers.

- Actions: every event a citizen sends (in groups, only commands and button presses) counts in
  a fixed one-minute window (``flood_window`` rows, incremented by one atomic upsert).
- Comments: counted in the ``comment`` table over the last hour (routes declare the quota).
  Contributions answer the consultation's own questions and are never throttled.
- Citizens who arrived less than ``flood_newcomer_minutes`` ago have stricter quotas.
- Over a quota, the event is ignored; the citizen is warned once per window (the ``warned``
  flag is set by one conditional update, so concurrent events warn once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.settings import Settings
from storage.models import Citizen
from storage.repositories import Repos
from storage.repositories_flood import FloodRepo

ACTIONS = "actions"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    warn: bool = False
    limit: int = 0


class FloodService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings
        self.windows = FloodRepo(repos.db, repos.session)

    def newcomer(self, citizen: Citizen) -> bool:
        return self.now - citizen.created_at < timedelta(
            minutes=self.settings.flood_newcomer_minutes
        )

    def action_limit(self, citizen: Citizen) -> int:
        s = self.settings
        return (
            s.flood_newcomer_actions_per_minute
            if self.newcomer(citizen)
            else s.flood_actions_per_minute
        )

    def comment_limit(self, citizen: Citizen) -> int:
        s = self.settings
        return (
            s.flood_newcomer_comments_per_hour
            if self.newcomer(citizen)
            else s.flood_comments_per_hour
        )

    def count_action(self, citizen: Citizen) -> Verdict:
        assert citizen.id is not None
        start = self.now.replace(second=0, microsecond=0)
        row_id, count = self.windows.bump(citizen.id, ACTIONS, start, 1, self.now)
        limit = self.action_limit(citizen)
        if count <= limit:
            return Verdict(True, limit=limit)
        return Verdict(False, self.windows.first_warning(row_id), limit)

    def check_quota(self, citizen: Citizen, quota: str) -> Verdict:
        """May this citizen publish one more text of this kind now? (``comment``: comments.
        Contributions answer the consultation's own questions, one per question: never
        throttled.)"""
        assert citizen.id is not None
        limit = self.comment_limit(citizen)
        recent = self.windows.published_since(quota, citizen.id, self.now - timedelta(hours=1))
        if recent < limit:
            return Verdict(True, limit=limit)
        start = self.now.replace(minute=0, second=0, microsecond=0)
        row_id, _count = self.windows.bump(citizen.id, quota, start, 0, self.now)
        return Verdict(False, self.windows.first_warning(row_id), limit)
