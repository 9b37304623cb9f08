"""Official answers, merging duplicates and opinion groups (issue 15, second half): the
domain services. Handlers are in bot.handlers.answers, the SQL in storage.repositories_answers.

- ``answer``: a moderator of the idea's consultation answers it (accepted / under study /
  rejected, with a text); replaces an earlier answer; audit-logged.
- ``merge``: a moderator merges a duplicate into another idea of the same consultation: each
  citizen's support counts once on the target, comments move there, the duplicate is marked
  ``merged`` and points to the target; audit-logged.
- ``OpinionGroupsService``: the cached groups or a request to compute them; ``compute_pending``
  is what the scheduler's worker runs, off the event path (its reading of the votes is one
  short transaction, the computation runs outside any).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import errors
from bot.domain import ConsultationInfo
from bot.i18n import N_, fmt_number, gettext, ngettext
from bot.messages import OutboundMessage, RichText, b, i
from bot.moderation import Actor, ModerationService
from bot.opinions import Groups, IdeaShare, Votes, anonymous_order, compute_groups
from bot.settings import Settings
from storage.db import Database
from storage.models import Contribution
from storage.models_answers import OfficialAnswer
from storage.repositories import Repos
from storage.repositories_answers import Moved

log = logging.getLogger(__name__)

MAX_ANSWER = 2000
STATUS_LABELS = {
    "accepted": N_("accepted"),
    "study": N_("under study"),
    "rejected": N_("rejected"),
}
STATUS_ICONS = {"accepted": "✅", "study": "🔎", "rejected": "❌"}
# Typed statuses, in the languages moderators write in (compared without accents or case).
STATUS_SPELLINGS = {
    "accepted": ("accepte", "acceptee", "accept", "oui", "yes"),
    "study": ("a l'etude", "etude", "al'etude", "a letude", "under study", "studying"),
    "rejected": ("rejete", "rejetee", "reject", "refuse", "refusee", "non", "no"),
}


class MergedIdea(errors.DomainError):
    msgid = N_("Idea #{id} was merged into #{into}: support or comment #{into} instead.")


class SameIdea(errors.DomainError):
    msgid = N_("An idea cannot be merged into itself.")


class CannotMerge(errors.DomainError):
    msgid = N_(
        "#{id} cannot be merged: both ideas must be published (or the duplicate hidden) and "
        "belong to the same consultation."
    )


class EmptyAnswer(errors.DomainError):
    msgid = N_("The answer needs a text: /answer {id} {status} YOUR TEXT")


def status_label(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '')} {gettext(STATUS_LABELS.get(status, status))}".strip()


def answer_block(row: OfficialAnswer | None) -> RichText:
    """The official answer as shown under an idea (empty without one)."""
    if row is None:
        return RichText()
    return (
        RichText()
        .p(b(gettext("Official answer: {status}").format(status=status_label(row.status))))
        .quote(row.text)
    )


def merged_block(into: int | None) -> RichText:
    if into is None:
        return RichText()
    return RichText().p(i(gettext("Merged into #{into}.").format(into=into)))


def merged_error(repos: Repos, contribution_id: int) -> errors.DomainError:
    into = repos.answers.merged_into(contribution_id)
    if into is None:
        return errors.ContributionNotAvailable(id=contribution_id)
    return MergedIdea(id=contribution_id, into=into)


@dataclass(frozen=True, slots=True)
class Answered:
    idea: Contribution
    answer: OfficialAnswer
    before: str | None  # the previous status, if it was answered already


@dataclass(frozen=True, slots=True)
class Merged:
    source: Contribution
    target: Contribution
    moved: Moved


class AnswerService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings
        self.moderation = ModerationService(repos, now, settings)

    def _idea(self, contribution_id: int) -> Contribution:
        row = self.repos.contributions.get(contribution_id)
        if row is None or row.status == "withdrawn":
            raise errors.UnknownContribution(id=contribution_id)
        return row

    def answer(self, actor: Actor, contribution_id: int, status: str, body: str) -> Answered:
        idea = self._idea(contribution_id)
        self.moderation.require(actor, idea.consultation_id)
        if idea.status == "merged":
            raise merged_error(self.repos, contribution_id)
        if status not in STATUS_LABELS:
            raise errors.DomainError()
        body = body.strip()[:MAX_ANSWER]
        if not body:
            raise EmptyAnswer(id=contribution_id, status=status)
        previous = self.repos.answers.answer(contribution_id)
        before = previous.status if previous is not None else None
        row = self.repos.answers.set_answer(
            contribution_id, idea.consultation_id, status, body, self.now
        )
        self.moderation.record(
            actor,
            idea.consultation_id,
            "answer",
            f"contribution:{contribution_id}",
            reason=status,
            details={"status": status, "before": before},
        )
        return Answered(idea, row, before)

    def merge(self, actor: Actor, source_id: int, target_id: int) -> Merged:
        if source_id == target_id:
            raise SameIdea()
        # Unknown ids get a clear answer before anything is locked.
        self._idea(source_id)
        self._idea(target_id)
        ideas = self.repos.answers.lock_ideas(source_id, target_id)
        source, target = ideas[source_id], ideas[target_id]
        self.moderation.require(actor, source.consultation_id)
        if source.status == "merged":
            raise merged_error(self.repos, source_id)
        if target.status == "merged":
            raise merged_error(self.repos, target_id)
        if source.consultation_id != target.consultation_id or source.status not in (
            "published",
            "hidden",
        ):
            raise CannotMerge(id=source_id)
        if target.status != "published":
            raise CannotMerge(id=target_id)
        moved = self.repos.answers.merge(source, target, self.now)
        self.moderation.record(
            actor,
            source.consultation_id,
            "merge",
            f"contribution:{source_id}",
            reason=f"into #{target_id}",
            details={
                "into": target_id,
                "supports": moved.supports,
                "merged_once": moved.merged_once,
                "comments": moved.comments,
            },
        )
        return Merged(source, target, moved)


# --------------------------------------------------------------------------- opinion groups


def read_votes(repos: Repos, consultation_id: int, seed: int) -> Votes:
    """The consultation's vote matrix in canonical order (participants in their anonymous
    order, ideas by id): the same ``Votes`` the export's matrix gives."""
    import numpy as np

    triples = repos.answers.votes(consultation_id)
    citizens = anonymous_order(sorted({t[0] for t in triples}), seed)
    index = {cid: n for n, cid in enumerate(citizens)}
    ideas = sorted({t[1] for t in triples})
    column = {idea: n for n, idea in enumerate(ideas)}
    rows = np.fromiter((index[t[0]] for t in triples), dtype=np.int64, count=len(triples))
    cols = np.fromiter((column[t[1]] for t in triples), dtype=np.int64, count=len(triples))
    values = np.fromiter((t[2] for t in triples), dtype=np.int64, count=len(triples))
    return Votes(len(citizens), tuple(ideas), rows, cols, values)


@dataclass(frozen=True, slots=True)
class GroupsView:
    """What a moderator asking for the groups gets: the groups, or that they are computing."""

    groups: Groups | None
    computing: bool
    computed_at: datetime | None = None


class OpinionGroupsService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings

    @property
    def params(self) -> tuple[int, int]:
        return self.settings.opinion_groups_seed, self.settings.opinion_groups_min_votes

    def fingerprint(self, consultation_id: int) -> str:
        seed, min_votes = self.params
        return self.repos.answers.fingerprint(consultation_id, seed, min_votes)

    def view(self, consultation_id: int) -> GroupsView:
        """The cached groups if they are those of the current votes; else a request for the
        worker (never the computation itself: this runs inside an event)."""
        fingerprint = self.fingerprint(consultation_id)
        row = self.repos.answers.cached_groups(consultation_id)
        if row is not None and row.fingerprint == fingerprint and row.status == "done":
            assert row.result is not None
            return GroupsView(Groups.from_json_data(row.result), False, row.computed_at)
        self.repos.answers.request_groups(consultation_id, fingerprint, self.now)
        return GroupsView(None, True)


def compute_for(db: Database, consultation_id: int, settings: Settings, now: datetime) -> Groups:
    """Read the votes (one short transaction), compute outside any transaction, store the
    result with the fingerprint of the votes read."""
    seed, min_votes = settings.opinion_groups_seed, settings.opinion_groups_min_votes
    with db.session() as session:
        repos = Repos(db, session)
        fingerprint = repos.answers.fingerprint(consultation_id, seed, min_votes)
        votes = read_votes(repos, consultation_id, seed)
    groups = compute_groups(votes, seed=seed, min_votes=min_votes)
    with db.session() as session:
        Repos(db, session).answers.store_groups(
            consultation_id, fingerprint, groups.to_json_data(), now
        )
    return groups


def compute_pending(db: Database, settings: Settings, now: datetime) -> list[int]:
    """Compute every requested set of groups (the scheduler's worker runs this in a thread)."""
    with db.session() as session:
        pending = Repos(db, session).answers.requested_groups()
    done = []
    for consultation_id in pending:
        try:
            compute_for(db, consultation_id, settings, now)
            done.append(consultation_id)
        except Exception:
            log.exception("opinion groups of consultation %s failed", consultation_id)
    return done


# --------------------------------------------------------------------------- notices


def answer_notice(
    info: ConsultationInfo, payload: dict[str, Any], *, author: bool
) -> OutboundMessage:
    """The message telling an idea's author or supporter about its official answer (in the
    current locale)."""
    idea, status = payload["idea"], payload["status"]
    if author:
        head = gettext("The moderators answered your idea #{id}: {status}.")
    else:
        head = gettext("The moderators answered idea #{id}, which you support: {status}.")
    rt = RichText().p(b(head.format(id=idea, status=status_label(status))))
    rt = rt.quote(str(payload["text"]))
    rt = rt.p(i(gettext("The idea:")), " ", str(payload.get("idea_text", ""))[:300])
    return OutboundMessage(chat_id="", text=rt, subject=("contribution", int(idea)))


# --------------------------------------------------------------------------- open data


def open_data(repos: Repos, info: ConsultationInfo, settings: Settings) -> dict[str, Any]:
    """The export's official answers, merged ideas and opinion groups section: the anonymised
    vote matrix (participant index × idea id, ±1), the seed and the minimum votes, and the
    groups computed from exactly these votes when the cache has them (else null: anyone can
    compute them with ``bot.opinions.groups_from_export``)."""
    seed, min_votes = settings.opinion_groups_seed, settings.opinion_groups_min_votes
    votes = read_votes(repos, info.id, seed)
    cached = repos.answers.cached_groups(info.id)
    fingerprint = repos.answers.fingerprint(info.id, seed, min_votes)
    groups = (
        cached.result
        if cached is not None and cached.status == "done" and cached.fingerprint == fingerprint
        else None
    )
    return {
        "answers": [
            {
                "contribution_id": a.contribution_id,
                "status": a.status,
                "text": a.text,
                "answered_at": a.updated_at.isoformat(),
            }
            for a in repos.answers.answers(info.id)
        ],
        "merges": [
            {"contribution_id": source, "into": target}
            for source, target in repos.answers.merges(info.id)
        ],
        "opinions": {
            "seed": seed,
            "min_votes": min_votes,
            "participants": votes.participants,
            "matrix": votes.triples(),
            "groups": groups,
        },
    }


# --------------------------------------------------------------------------- showing groups


def idea_texts(repos: Repos, groups: Groups) -> dict[int, str]:
    """Short texts of the ideas the groups name."""
    ids = {x.idea for g in groups.groups for x in g.defining}
    ids |= {x.idea for x in (*groups.consensus, *groups.divisive)}
    out = {}
    for idea in sorted(ids):
        row = repos.contributions.get(idea)
        if row is not None:
            out[idea] = " ".join(row.text.split())[:120]
    return out


def group_name(n: int) -> str:
    return chr(ord("A") + n)


def _share_line(item: IdeaShare, texts: dict[int, str]) -> RichText:
    share = f" ({round(item.share * 100)} %) "
    return RichText().li(b(f"#{item.idea}"), share, texts.get(item.idea, ""))


def render_groups(groups: Groups, texts: dict[int, str]) -> RichText:
    """The opinion groups as text (current locale): sizes, defining, consensus and divisive
    ideas (with the share of support of the group, or of the least supportive group)."""
    rt = RichText()
    if not groups.groups:
        return rt.p(
            gettext(
                "Not enough votes to tell opinion groups apart yet (participants need at least "
                "{n} votes each)."
            ).format(n=groups.min_votes)
        )
    rt = rt.p(
        ngettext(
            "{n} participant placed in {k} groups",
            "{n} participants placed in {k} groups",
            groups.participants,
        ).format(n=fmt_number(groups.participants), k=len(groups.groups)),
        " · ",
        gettext("{n} with too few votes").format(n=fmt_number(groups.left_out)),
    )
    for n, group in enumerate(groups.groups):
        size = ngettext("{n} participant", "{n} participants", group.size)
        rt = rt.p(
            b(
                gettext("Group {letter}: {size}").format(
                    letter=group_name(n), size=size.format(n=fmt_number(group.size))
                )
            ),
            " — ",
            i(gettext("supports much more than the others:")),
        )
        for item in group.defining:
            rt = rt + _share_line(item, texts)
    if groups.consensus:
        rt = rt.p(b(gettext("Consensus: supported by every group")))
        for item in groups.consensus:
            rt = rt + _share_line(item, texts)
    if groups.divisive:
        rt = rt.p(b(gettext("Divisive: the groups disagree")))
        for item in groups.divisive:
            rt = rt + _share_line(item, texts)
    return rt


def groups_chart(groups: Groups, texts: dict[int, str], title: str) -> bytes:
    """A bar chart of the groups' sizes, each labelled with its most defining idea."""
    from bot.chart import Bar, bar_chart

    bars = []
    for n, group in enumerate(groups.groups):
        label = gettext("Group {letter}").format(letter=group_name(n))
        if group.defining:
            first = group.defining[0].idea
            label += f" · #{first} {texts.get(first, '')}"
        bars.append(Bar(label, group.size))
    return bar_chart(
        gettext("Opinion groups — {title}").format(title=title),
        bars,
        xlabel=gettext("Participants"),
        empty=gettext("Not enough votes to tell opinion groups apart."),
    )


def closing_groups(
    repos: Repos, info: ConsultationInfo, seed: int, min_votes: int, now: datetime
) -> Groups:
    """The groups published with the closing results: the cached ones when they are those of
    the final votes, else computed now (the scheduler's job, never an event)."""
    fingerprint = repos.answers.fingerprint(info.id, seed, min_votes)
    cached = repos.answers.cached_groups(info.id)
    if cached is not None and cached.status == "done" and cached.fingerprint == fingerprint:
        assert cached.result is not None
        return Groups.from_json_data(cached.result)
    groups = compute_groups(read_votes(repos, info.id, seed), seed=seed, min_votes=min_votes)
    repos.answers.store_groups(info.id, fingerprint, groups.to_json_data(), now)
    return groups


def groups_parts(
    info: ConsultationInfo, payload: dict[str, Any], files: dict[str, Any], locale: str
) -> list[OutboundMessage]:
    """The closing results' opinion groups: a text and its chart (none without groups)."""
    data = payload.get("groups")
    if not data or not data.get("groups"):
        return []
    groups = Groups.from_json_data(data)
    texts = {int(k): v for k, v in payload.get("group_texts", {}).items()}
    rt = RichText().h(gettext("Opinion groups")) + render_groups(groups, texts)
    parts = [OutboundMessage(chat_id="", text=rt)]
    chart = files.get(f"groups-{locale}.png") or files.get(f"groups-{info.document.language}.png")
    if chart is not None:
        parts.append(OutboundMessage(chat_id="", attachment=chart))
    return parts
