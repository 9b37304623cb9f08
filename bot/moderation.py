"""Moderation: moderators per consultation, the audit log, reports, decisions and bans.

Domain services in the style of ``bot.services``: one verb per method, a value back or a named
error raised, no messages built. Every check of a role uses immutable platform ids
(``Actor.platform``/``Actor.user_id``), never a display name.

Decisions on content (Decidim's model):

- a citizen reports a contribution or a comment with a reason; one report per citizen and
  target (a unique constraint: reporting twice counts once);
- after ``moderation_auto_hide_reports`` open reports the target is hidden automatically;
- a moderator approves (pending → published, or dismisses the reports), hides (with a
  reason), restores (hidden → published, with a reason) or bans the author;
- any decision resolves the open reports on the target, so a restored target is hidden again
  only by new reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlmodel import col

from bot import errors
from bot.i18n import N_, gettext
from bot.privacy import one_way_id, privacy_secret
from bot.settings import Settings
from storage.models import Citizen, Comment, Consultation, Contribution
from storage.models_moderation import AuditEntry, Ban, Moderator, ModeratorChat, Report
from storage.prepared import Prepared
from storage.repositories import Repos

REPORT_REASONS: dict[str, str] = {
    "spam": N_("Spam or advertising"),
    "offensive": N_("Offensive, hateful or abusive"),
    "offtopic": N_("Off-topic"),
    "personal": N_("Reveals personal data"),
    "other": N_("Another problem"),
}
RESTORE_REASONS: dict[str, str] = {
    "complies": N_("Reviewed: it complies with the rules"),
    "mistake": N_("Hidden by mistake"),
}
MAX_REASON = 300
_PLATFORM_ID = re.compile(r"^([a-z][a-z0-9_]{0,15}):(\S{1,255})$")


def reason_label(reason: str | None) -> str:
    """A reason code's translated label, or a free-text reason as written."""
    if not reason:
        return ""
    if reason in REPORT_REASONS:
        return gettext(REPORT_REASONS[reason])
    if reason in RESTORE_REASONS:
        return gettext(RESTORE_REASONS[reason])
    if reason.startswith("auto:"):
        return gettext("Hidden automatically after {n} reports").format(n=reason[5:])
    return reason


# --------------------------------------------------------------------------- errors


class UnknownComment(errors.DomainError):
    msgid = N_("I can't find comment c{id}. It may have been withdrawn.")


class BadTarget(errors.DomainError):
    msgid = N_(
        "“{value}” is not a contribution or comment number: write 12 for contribution #12 "
        "and c7 for comment c7."
    )


class AlreadyReported(errors.DomainError):
    msgid = N_("You have already reported {target}; a report counts once. Thank you.")


class OwnContent(errors.DomainError):
    msgid = N_("You cannot report what you wrote yourself: withdraw it instead.")


class Banned(errors.DomainError):
    msgid = N_(
        "A moderator has suspended your participation in this consultation (reason: {reason}). "
        "You can still read it."
    )


class BadPlatformId(errors.DomainError):
    msgid = N_(
        "“{value}” is not an immutable platform id. Write it as platform:id, for example "
        "telegram:123456789 or matrix:@alice:example.org (never a @username: ask the person "
        "to send /whoami)."
    )


class NothingToDo(errors.DomainError):
    msgid = N_("{target} is already {status}: nothing to do.")


class ReasonRequired(errors.DomainError):
    msgid = N_("Please give a reason (up to 300 characters): the author will be told.")


class AlreadyBanned(errors.DomainError):
    msgid = N_("The author of {target} is already suspended from this consultation.")


class CannotBan(errors.DomainError):
    msgid = N_("The author of {target} cannot be suspended (a moderator, or erased data).")


class NotBanned(errors.DomainError):
    msgid = N_("No suspension of “{who}” in this consultation. Type /bans to list them.")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Target:
    """A contribution (``12``) or a comment (``c7``)."""

    kind: str  # contribution | comment
    id: int

    @classmethod
    def parse(cls, value: str | None) -> Target:
        text = (value or "").strip().lstrip("#").lower()
        kind = "contribution"
        if text.startswith("c"):
            kind, text = "comment", text[1:]
        if not text.isdigit() or len(text) > 12:
            raise BadTarget(value=(value or "")[:20])
        return cls(kind, int(text))

    @property
    def code(self) -> str:
        """As typed and in action ids: ``12`` or ``c7``."""
        return f"c{self.id}" if self.kind == "comment" else str(self.id)

    def label(self) -> str:
        if self.kind == "comment":
            return gettext("comment c{id}").format(id=self.id)
        return gettext("contribution #{id}").format(id=self.id)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, by immutable platform id."""

    citizen: Citizen
    platform: str
    user_id: str
    admin: bool

    @property
    def role(self) -> str:
        return "admin" if self.admin else "moderator"


@dataclass(frozen=True, slots=True)
class Content:
    target: Target
    row: Contribution | Comment
    consultation_id: int
    author: Citizen

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def text(self) -> str:
        return self.row.text


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # approve | hide | restore
    content: Content
    before: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    content: Content
    count: int
    auto_hidden: bool


@dataclass(frozen=True, slots=True)
class BanOutcome:
    ban: Ban
    author: Citizen
    consultation_id: int
    changed: list[Target] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueItem:
    content: Content
    reports: int
    reasons: tuple[str, ...]


def parse_platform_id(value: str, default_platform: str) -> tuple[str, str]:
    """``telegram:123`` → (telegram, 123); a bare id takes the sender's platform. Usernames
    (``@bob``, mutable) are refused; Matrix ids (``@bob:example.org``) are immutable."""
    value = value.strip()
    match = _PLATFORM_ID.match(value)
    platform, user_id = (match.group(1), match.group(2)) if match else (default_platform, value)
    if not user_id or len(user_id) > 255 or any(ch.isspace() for ch in user_id):
        raise BadPlatformId(value=value[:80])
    if user_id.startswith("@") and ":" not in user_id:
        raise BadPlatformId(value=value[:80])
    return platform, user_id


_BAN_REASON = Prepared(
    select(col(Ban.reason)).where(
        col(Ban.consultation_id) == bindparam("consultation"),
        col(Ban.citizen_id) == bindparam("citizen"),
    )
)


def ensure_not_banned(repos: Repos, consultation_id: int, citizen: Citizen) -> None:
    """Raise ``Banned`` if the citizen is suspended from this consultation."""
    reason = _BAN_REASON.scalar(
        repos.session, {"consultation": consultation_id, "citizen": citizen.id}
    )
    if reason is not None:
        raise Banned(reason=reason_label(reason))


# --------------------------------------------------------------------------- service


class ModerationService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings
        self.s = repos.session

    # ------------------------------------------------------------------ roles

    def moderated(self, platform: str, user_id: str) -> set[int]:
        """The consultations this platform id moderates."""
        return set(
            self.s.execute(
                select(col(Moderator.consultation_id)).where(
                    col(Moderator.platform) == platform,
                    col(Moderator.platform_user_id) == user_id,
                )
            ).scalars()
        )

    def may_moderate(self, actor: Actor, consultation_id: int) -> bool:
        return actor.admin or consultation_id in self.moderated(actor.platform, actor.user_id)

    def require(self, actor: Actor, consultation_id: int) -> None:
        if not self.may_moderate(actor, consultation_id):
            raise errors.NotAModerator()

    def add_moderator(
        self, actor: Actor, consultation: Consultation, platform: str, user_id: str
    ) -> bool:
        assert consultation.id is not None
        added = (
            self.repos.db.insert_ignore(
                self.s,
                Moderator,
                consultation_id=consultation.id,
                platform=platform,
                platform_user_id=user_id,
                granted_by=actor.citizen.id,
                created_at=self.now,
            )
            is not None
        )
        if added:
            self.record(
                actor,
                consultation.id,
                "moderator.add",
                f"{platform}:{user_id}",
                target_key=self._key(platform, user_id),
            )
        return added

    def remove_moderator(
        self, actor: Actor, consultation: Consultation, platform: str, user_id: str
    ) -> bool:
        removed = self.s.execute(
            delete(Moderator).where(
                col(Moderator.consultation_id) == consultation.id,
                col(Moderator.platform) == platform,
                col(Moderator.platform_user_id) == user_id,
            )
        ).rowcount  # type: ignore[attr-defined]
        if removed:
            self.record(
                actor,
                consultation.id,
                "moderator.remove",
                f"{platform}:{user_id}",
                target_key=self._key(platform, user_id),
            )
        return bool(removed)

    def moderators(self, consultation_id: int) -> list[Moderator]:
        return list(
            self.s.execute(
                select(Moderator)
                .where(col(Moderator.consultation_id) == consultation_id)
                .order_by(col(Moderator.id))
            ).scalars()
        )

    # ------------------------------------------------------------------ moderators' chats

    def add_chat(self, actor: Actor, consultation_id: int, platform: str, chat_id: str) -> bool:
        added = (
            self.repos.db.insert_ignore(
                self.s,
                ModeratorChat,
                consultation_id=consultation_id,
                platform=platform,
                chat_id=chat_id,
                registered_by=actor.citizen.id,
                created_at=self.now,
            )
            is not None
        )
        if added:
            self.record(actor, consultation_id, "modchat.add", f"chat:{platform}")
        return added

    def remove_chat(self, actor: Actor, consultation_id: int, platform: str, chat_id: str) -> bool:
        removed = self.s.execute(
            delete(ModeratorChat).where(
                col(ModeratorChat.consultation_id) == consultation_id,
                col(ModeratorChat.platform) == platform,
                col(ModeratorChat.chat_id) == chat_id,
            )
        ).rowcount  # type: ignore[attr-defined]
        if removed:
            self.record(actor, consultation_id, "modchat.remove", f"chat:{platform}")
        return bool(removed)

    def chats(self, consultation_id: int) -> list[ModeratorChat]:
        return list(
            self.s.execute(
                select(ModeratorChat)
                .where(col(ModeratorChat.consultation_id) == consultation_id)
                .order_by(col(ModeratorChat.id))
            ).scalars()
        )

    def chat_consultations(self, platform: str, chat_id: str) -> list[int]:
        """The consultations whose moderators' chat this chat is."""
        return list(
            self.s.execute(
                select(col(ModeratorChat.consultation_id))
                .where(
                    col(ModeratorChat.platform) == platform, col(ModeratorChat.chat_id) == chat_id
                )
                .order_by(col(ModeratorChat.id))
            ).scalars()
        )

    # ------------------------------------------------------------------ audit

    def record(
        self,
        actor: Actor | None,
        consultation_id: int | None,
        action: str,
        target: str,
        *,
        reason: str | None = None,
        target_key: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.s.add(
            AuditEntry(
                consultation_id=consultation_id,
                actor_id=actor.citizen.id if actor else None,
                actor_role=actor.role if actor else "system",
                action=action,
                target=target[:300],
                target_key=target_key,
                reason=reason[:500] if reason else None,
                details=details or {},
                created_at=self.now,
            )
        )

    def audit_log(self, consultation_ids: Iterable[int] | None, limit: int) -> list[AuditEntry]:
        stmt = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
        if consultation_ids is not None:
            stmt = stmt.where(col(AuditEntry.consultation_id).in_(list(consultation_ids)))
        return list(self.s.execute(stmt).scalars())

    # ------------------------------------------------------------------ content

    def content(self, target: Target) -> Content:
        """The contribution or comment, its consultation and its author (withdrawn content is
        unknown)."""
        row: Contribution | Comment | None
        if target.kind == "comment":
            row = self.s.get(Comment, target.id)
            parent = self.s.get(Contribution, row.contribution_id) if row is not None else None
            if row is None or parent is None or row.status == "withdrawn":
                raise UnknownComment(id=target.id)
            consultation_id = parent.consultation_id
        else:
            row = self.s.get(Contribution, target.id)
            if row is None or row.status == "withdrawn":
                raise errors.UnknownContribution(id=target.id)
            consultation_id = row.consultation_id
        author = self.s.get(Citizen, row.citizen_id)
        assert author is not None
        return Content(target, row, consultation_id, author)

    def _set_status(self, content: Content, status: str) -> None:
        row = content.row
        row.status = status
        if isinstance(row, Contribution):
            row.updated_at = self.now
        self.s.add(row)

    def _resolve_reports(self, target: Target) -> None:
        self.s.execute(
            update(Report)
            .where(
                col(Report.target_type) == target.kind,
                col(Report.target_id) == target.id,
                col(Report.resolved_at).is_(None),
            )
            .values(resolved_at=self.now)
        )

    def open_reports(self, target: Target) -> list[str]:
        return list(
            self.s.execute(
                select(col(Report.reason)).where(
                    col(Report.target_type) == target.kind,
                    col(Report.target_id) == target.id,
                    col(Report.resolved_at).is_(None),
                )
            ).scalars()
        )

    # ------------------------------------------------------------------ reports

    def report(self, citizen: Citizen, target: Target, reason: str) -> ReportOutcome:
        if reason not in REPORT_REASONS:
            raise errors.DomainError()
        content = self.content(target)
        if content.status != "published":
            if target.kind == "comment":
                raise UnknownComment(id=target.id)
            raise errors.ContributionNotAvailable(id=target.id)
        if content.author.id == citizen.id:
            raise OwnContent()
        ensure_not_banned(self.repos, content.consultation_id, citizen)
        inserted = self.repos.db.insert_ignore(
            self.s,
            Report,
            consultation_id=content.consultation_id,
            target_type=target.kind,
            target_id=target.id,
            citizen_id=citizen.id,
            reason=reason,
            created_at=self.now,
        )
        if inserted is None:
            raise AlreadyReported(target=target.label())
        count = len(self.open_reports(target))
        hidden = False
        if count >= self.settings.moderation_auto_hide_reports:
            self._set_status(content, "hidden")
            self.record(None, content.consultation_id, "hide", target.key, reason=f"auto:{count}")
            hidden = True
        return ReportOutcome(content, count, hidden)

    # ------------------------------------------------------------------ decisions

    def _clean_reason(self, reason: str | None, *, required: bool) -> str | None:
        reason = (reason or "").strip()[:MAX_REASON]
        if not reason and required:
            raise ReasonRequired()
        return reason or None

    def approve(self, actor: Actor, target: Target, reason: str | None = None) -> Decision:
        content = self.content(target)
        self.require(actor, content.consultation_id)
        before = content.status
        if before == "hidden":
            return self.restore(actor, target, reason or "complies")
        if before == "published" and not self.open_reports(target):
            raise NothingToDo(target=target.label(), status=gettext("published"))
        self._set_status(content, "published")
        self._resolve_reports(target)
        reason = self._clean_reason(reason, required=False)
        self.record(actor, content.consultation_id, "approve", target.key, reason=reason)
        return Decision("approve", content, before, reason)

    def hide(self, actor: Actor, target: Target, reason: str | None) -> Decision:
        content = self.content(target)
        self.require(actor, content.consultation_id)
        cleaned = self._clean_reason(reason, required=True)
        before = content.status
        if before == "hidden":
            raise NothingToDo(target=target.label(), status=gettext("hidden"))
        self._set_status(content, "hidden")
        self._resolve_reports(target)
        self.record(actor, content.consultation_id, "hide", target.key, reason=cleaned)
        return Decision("hide", content, before, cleaned)

    def restore(self, actor: Actor, target: Target, reason: str | None) -> Decision:
        content = self.content(target)
        self.require(actor, content.consultation_id)
        cleaned = self._clean_reason(reason, required=True)
        before = content.status
        if before != "hidden":
            raise NothingToDo(target=target.label(), status=gettext("visible"))
        self._set_status(content, "published")
        self._resolve_reports(target)
        self.record(actor, content.consultation_id, "restore", target.key, reason=cleaned)
        return Decision("restore", content, before, cleaned)

    # ------------------------------------------------------------------ bans

    def _key(self, platform: str, user_id: str) -> str:
        return one_way_id(privacy_secret(self.settings), platform, user_id)

    def ban(self, actor: Actor, target: Target, reason: str | None) -> BanOutcome:
        """Suspend the author of ``target`` from its consultation (and, by setting, hide what
        they wrote there)."""
        content = self.content(target)
        cid = content.consultation_id
        self.require(actor, cid)
        cleaned = self._clean_reason(reason, required=True)
        assert cleaned is not None
        author = content.author
        if author.platform_user_id is None or self._is_moderator(author, cid):
            raise CannotBan(target=target.label())
        key = self._key(author.platform, author.platform_user_id)
        ban_id = self.repos.db.insert_ignore(
            self.s,
            Ban,
            consultation_id=cid,
            citizen_id=author.id,
            subject_key=key,
            reason=cleaned,
            banned_by=actor.citizen.id,
            hidden={},
            created_at=self.now,
        )
        if ban_id is None:
            raise AlreadyBanned(target=target.label())
        changed: list[Target] = []
        if self.settings.moderation_ban_hides_content:
            changed = self._hide_all(author, cid)
        ban = self.s.get(Ban, ban_id)
        assert ban is not None
        ban.hidden = {
            "contribution": [t.id for t in changed if t.kind == "contribution"],
            "comment": [t.id for t in changed if t.kind == "comment"],
        }
        self.s.add(ban)
        self.record(
            actor,
            cid,
            "ban",
            f"citizen:{author.pseudonym}",
            reason=cleaned,
            target_key=key,
            details={"from": target.key, "hidden": len(changed)},
        )
        return BanOutcome(ban, author, cid, changed)

    def _is_moderator(self, citizen: Citizen, consultation_id: int) -> bool:
        assert citizen.platform_user_id is not None
        platform_id = f"{citizen.platform}:{citizen.platform_user_id}"
        return platform_id in self.settings.admins or consultation_id in self.moderated(
            citizen.platform, citizen.platform_user_id
        )

    def _hide_all(self, author: Citizen, consultation_id: int) -> list[Target]:
        changed: list[Target] = []
        for row in self.s.execute(
            select(Contribution).where(
                col(Contribution.citizen_id) == author.id,
                col(Contribution.consultation_id) == consultation_id,
                col(Contribution.status).in_(("published", "pending")),
            )
        ).scalars():
            row.status, row.updated_at = "hidden", self.now
            self.s.add(row)
            assert row.id is not None
            changed.append(Target("contribution", row.id))
        for comment in self.s.execute(
            select(Comment)
            .join(Contribution, col(Contribution.id) == Comment.contribution_id)
            .where(
                col(Comment.citizen_id) == author.id,
                col(Contribution.consultation_id) == consultation_id,
                col(Comment.status) == "published",
            )
        ).scalars():
            comment.status = "hidden"
            self.s.add(comment)
            assert comment.id is not None
            changed.append(Target("comment", comment.id))
        return changed

    def find_ban(self, consultation_id: int, who: str) -> Ban:
        """A ban by the banned citizen's pseudonym (as shown to moderators) or by its number."""
        who = who.strip()
        stmt = select(Ban).join(Citizen, col(Citizen.id) == Ban.citizen_id)
        stmt = stmt.where(col(Ban.consultation_id) == consultation_id)
        if who.isdigit():
            stmt = stmt.where(or_(col(Ban.id) == int(who), col(Citizen.pseudonym) == who))
        else:
            stmt = stmt.where(col(Citizen.pseudonym) == who.lower())
        ban = self.s.execute(stmt).scalar()
        if ban is None:
            raise NotBanned(who=who[:40])
        return ban

    def unban(
        self, actor: Actor, consultation_id: int, who: str, reason: str | None
    ) -> BanOutcome:
        self.require(actor, consultation_id)
        ban = self.find_ban(consultation_id, who)
        cleaned = self._clean_reason(reason, required=False)
        author = self.s.get(Citizen, ban.citizen_id)
        assert author is not None
        restored: list[Target] = []
        hidden = ban.hidden or {}
        for kind, model in (("contribution", Contribution), ("comment", Comment)):
            ids = [int(i) for i in hidden.get(kind, [])]
            if not ids:
                continue
            for row in self.s.execute(
                select(model).where(col(model.id).in_(ids), col(model.status) == "hidden")
            ).scalars():
                row.status = "published"
                self.s.add(row)
                restored.append(Target(kind, row.id))
        self.s.execute(delete(Ban).where(col(Ban.id) == ban.id))
        self.record(
            actor,
            consultation_id,
            "unban",
            f"citizen:{author.pseudonym}",
            reason=cleaned,
            target_key=ban.subject_key,
            details={"restored": len(restored)},
        )
        return BanOutcome(ban, author, consultation_id, restored)

    def bans(self, consultation_id: int) -> list[tuple[Ban, Citizen]]:
        return [
            (ban, citizen)
            for ban, citizen in self.s.execute(
                select(Ban, Citizen)
                .join(Citizen, col(Citizen.id) == Ban.citizen_id)
                .where(col(Ban.consultation_id) == consultation_id)
                .order_by(col(Ban.id))
            ).all()
        ]

    def carry_bans(self, citizen: Citizen) -> int:
        """A person who erased their data and came back is still suspended: point the bans
        kept under their one-way id at their new citizen row."""
        if citizen.platform_user_id is None:
            return 0
        orphan = self.s.execute(
            select(col(Ban.id))
            .join(Citizen, col(Citizen.id) == Ban.citizen_id)
            .where(col(Citizen.platform_user_id).is_(None))
            .limit(1)
        ).first()
        if orphan is None:
            return 0
        key = self._key(citizen.platform, citizen.platform_user_id)
        return self.s.execute(
            update(Ban).where(col(Ban.subject_key) == key).values(citizen_id=citizen.id)
        ).rowcount  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ queue

    def queue(self, consultation_id: int, limit: int = 10) -> list[QueueItem]:
        """What awaits a decision: contributions awaiting approval (pre-moderation) and content
        with open reports (hidden automatically or not), oldest first."""
        items: list[QueueItem] = []
        pending = self.s.execute(
            select(col(Contribution.id))
            .where(
                col(Contribution.consultation_id) == consultation_id,
                col(Contribution.status) == "pending",
            )
            .order_by(col(Contribution.id))
            .limit(limit)
        ).scalars()
        seen: set[Target] = set()
        for cid in pending:
            seen.add(Target("contribution", cid))
        reported = self.s.execute(
            select(col(Report.target_type), col(Report.target_id), func.min(col(Report.id)))
            .where(
                col(Report.consultation_id) == consultation_id, col(Report.resolved_at).is_(None)
            )
            .group_by(col(Report.target_type), col(Report.target_id))
            .order_by(func.min(col(Report.id)))
            .limit(limit)
        ).all()
        targets = sorted(seen, key=lambda t: t.id) + [
            Target(kind, tid) for kind, tid, _first in reported if Target(kind, tid) not in seen
        ]
        for target in targets[:limit]:
            try:
                content = self.content(target)
            except errors.DomainError:
                continue
            reasons = self.open_reports(target)
            items.append(QueueItem(content, len(reasons), tuple(sorted(set(reasons)))))
        return items
