"""Opinions while sorting ideas (issue 15): agree (a support), disagree, withdraw a
disagreement. One opinion per citizen and idea: disagreeing withdraws a support, supporting
withdraws a disagreement. Disagreements are personal data, only ever shown as counts."""

from __future__ import annotations

from datetime import datetime

from bot import errors
from bot.domain import ConsultationInfo
from bot.i18n import N_
from bot.moderation import ensure_not_banned
from bot.services import Services, published_contribution, require
from storage.models import Citizen
from storage.repositories import Repos


class AlreadyDisagreed(errors.DomainError):
    msgid = N_("You already disagree with #{id}. To withdraw it: /undisagree {id}")


class NotDisagreed(errors.DomainError):
    msgid = N_("You do not disagree with #{id}.")


class OpinionService:
    def __init__(self, repos: Repos, services: Services, now: datetime) -> None:
        self.repos, self.services, self.now = repos, services, now

    def agree(self, info: ConsultationInfo, contribution_id: int, citizen: Citizen) -> None:
        """Support the idea, withdrawing a disagreement with it if there was one."""
        assert citizen.id is not None
        self.services.supports.support(info, contribution_id, citizen)
        self.repos.legible.withdraw(contribution_id, citizen.id)

    def disagree(self, info: ConsultationInfo, contribution_id: int, citizen: Citizen) -> None:
        """Record a disagreement, withdrawing the citizen's support for the idea if any."""
        row = published_contribution(self.repos, contribution_id, info)
        require(info, self.now, "support")
        ensure_not_banned(self.repos, info.id, citizen)
        if row.citizen_id == citizen.id:
            raise errors.OwnContribution()
        assert citizen.id is not None
        if self.repos.supports.supported_ids(citizen.id, [contribution_id]):
            self.services.supports.withdraw_support(info, contribution_id, citizen)
        if not self.repos.legible.disagree(contribution_id, citizen.id, self.now):
            raise AlreadyDisagreed(id=contribution_id)

    def withdraw(self, info: ConsultationInfo, contribution_id: int, citizen: Citizen) -> None:
        published_contribution(self.repos, contribution_id, info)
        require(info, self.now, "support")
        assert citizen.id is not None
        if not self.repos.legible.withdraw(contribution_id, citizen.id):
            raise NotDisagreed(id=contribution_id)
