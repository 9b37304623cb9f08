"""Moderators' answers, merges and opinion groups in chat (issue 15, second half).

- ``/answer N accepted|study|rejected TEXT`` (also ``accepté``, ``à l'étude``, ``rejeté``…);
  the 📣 button on an idea card (moderators only) picks the status, then the typed command
  gives the text. The author is told at once (their private chat), the supporters who accept
  the consultation's news through a paced broadcast.
- ``/merge FROM INTO``: both authors are told.
- ``/groups``: the opinion groups, from the cache, or "being computed" (the scheduler's worker
  computes them off the event path).
"""

from __future__ import annotations

from collections.abc import Callable

from bot import answers as domain
from bot.actions import pack
from bot.answers import STATUS_LABELS, STATUS_SPELLINGS, AnswerService, OpinionGroupsService
from bot.broadcasts import BroadcastService
from bot.handlers import moderation as mod
from bot.i18n import N_, fmt_datetime, fmt_number, ngettext, use_locale
from bot.i18n import gettext as _
from bot.messages import Button, OutboundMessage, RichText, code, i
from bot.params import Choice, Int, Text, fold
from bot.router import Ctx, Reply, Role, Router
from storage.models import Citizen

router = Router("answers")


def _service(ctx: Ctx) -> AnswerService:
    return AnswerService(ctx.repos, ctx.now, ctx.dispatcher.settings)


def _tell(ctx: Ctx, citizen: Citizen | None, make: Callable[[], RichText]) -> None:
    """A message to a citizen's private chat (in their language), unless they are the actor."""
    if citizen is None or citizen.id == ctx.citizen.id:
        return
    recipient = mod.private_recipient(ctx, citizen)
    if recipient is None:
        return
    with use_locale(recipient.locale):
        message = OutboundMessage(chat_id=recipient.chat_id, text=make())
    mod.post(ctx, recipient, message)


# --------------------------------------------------------------------------- answers


def _status_picker(ctx: Ctx, idea: int) -> OutboundMessage:
    rt = RichText().p(_("How do the moderators answer idea #{id}?").format(id=idea))
    rt = rt.p(
        i(_("Or type it:")),
        " ",
        code(_("/answer {id} accepted|study|rejected TEXT").format(id=idea)),
    )
    rows = tuple(
        (Button(domain.status_label(status), pack("ans", idea, status)),)
        for status in STATUS_LABELS
    )
    return ctx.reply(rt, rows, edit=mod._pressed(ctx))


def _spelled_status(text: str) -> tuple[str | None, str]:
    """A status typed in several words (``à l'étude``, ``under study``) and the text after it."""
    words = text.split()
    for canonical, spellings in STATUS_SPELLINGS.items():
        for spelling in spellings:
            n = len(spelling.split())
            if n > 1 and len(words) > n and fold(" ".join(words[:n])) == fold(spelling):
                return canonical, " ".join(words[n:])
    return None, text


@router.action(
    "ans",
    command="answer",
    params=(
        Int("idea", N_("NUMBER")),
        Choice("status", N_("accepted|study|rejected"), STATUS_SPELLINGS, optional=True),
        Text("text", N_("TEXT"), optional=True),
    ),
    help=N_("Give an idea its official answer (accepted, under study or rejected, with a text)"),
    role=Role.MODERATOR,
)
def answer(ctx: Ctx) -> Reply:
    idea: int = ctx.params["idea"]
    status = ctx.params.get("status")
    body = ctx.params.get("text")
    if status is None and body:
        status, body = _spelled_status(body)
    svc = _service(ctx)
    if status is None or not body:
        row = svc._idea(idea)
        svc.moderation.require(mod.actor(ctx), row.consultation_id)
        if status is None:
            return _status_picker(ctx, idea)
        typed = f"/answer {idea} {status} " + _("TEXT")
        return ctx.reply(RichText().p(_("Now type the answer's text:"), " ", code(typed)))
    done = svc.answer(mod.actor(ctx), idea, status, body)
    info = ctx.services.consultations.get(done.idea.consultation_id)
    payload = {
        "idea": idea,
        "status": status,
        "text": done.answer.text,
        "idea_text": done.idea.text[:300],
    }
    author = ctx.repos.citizens.get(done.idea.citizen_id)
    _tell(ctx, author, make=lambda: domain.answer_notice(info, payload, author=True).text)
    supporters = ctx.repos.answers.supporters_with_news(idea, info.id)
    if supporters:
        # The supporters through a broadcast: paced per platform, resumable, once each.
        BroadcastService(ctx.repos, ctx.now)._create(
            info, "answer", payload, supporters, by=ctx.citizen.id
        )
    rt = RichText().p(
        _("📣 Idea #{id} answered: {status}.").format(id=idea, status=domain.status_label(status)),
        " ",
        ngettext(
            "Its author and {n} supporter who accepts news are told.",
            "Its author and {n} supporters who accept news are told.",
            len(supporters),
        ).format(n=fmt_number(len(supporters))),
    )
    return ctx.reply(rt.quote(done.answer.text[:500]), edit=mod._pressed(ctx))


# --------------------------------------------------------------------------- merging


@router.command(
    "merge",
    params=(Int("source", N_("FROM")), Int("target", N_("INTO"))),
    help=N_("Merge a duplicate idea into another one (supports counted once, comments moved)"),
    role=Role.MODERATOR,
)
def merge(ctx: Ctx) -> Reply:
    done = _service(ctx).merge(mod.actor(ctx), ctx.params["source"], ctx.params["target"])
    source, target = done.source, done.target
    assert source.id is not None and target.id is not None
    src, dst = source.id, target.id

    def to_source_author() -> RichText:
        return (
            RichText()
            .p(
                _(
                    "Your idea #{id} was merged by the moderators into #{into}, a similar idea: "
                    "its supports and comments now count there."
                ).format(id=src, into=dst)
            )
            .quote(target.text[:300])
        )

    def to_target_author() -> RichText:
        return (
            RichText()
            .p(
                _(
                    "The moderators merged idea #{id}, a similar one, into your idea #{into}: "
                    "its supports and comments now count for yours."
                ).format(id=src, into=dst)
            )
            .quote(source.text[:300])
        )

    _tell(ctx, ctx.repos.citizens.get(source.citizen_id), make=to_source_author)
    if target.citizen_id != source.citizen_id:
        _tell(ctx, ctx.repos.citizens.get(target.citizen_id), make=to_target_author)
    moved = done.moved
    rt = RichText().p(
        _("🔀 #{id} merged into #{into}.").format(id=src, into=dst),
        " ",
        _(
            "Supports moved: {moved} (already supporting #{into}: {once}); comments moved: "
            "{comments}. Both authors are told."
        ).format(
            moved=fmt_number(moved.supports),
            into=dst,
            once=fmt_number(moved.merged_once),
            comments=fmt_number(moved.comments),
        ),
    )
    return ctx.reply(rt)


# --------------------------------------------------------------------------- opinion groups


@router.command(
    "groups",
    help=N_("The opinion groups of the consultation (computed from supports and disagreements)"),
    role=Role.MODERATOR,
)
def groups(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = mod.service(ctx)
    svc.require(mod.actor(ctx), info.id)
    view = OpinionGroupsService(ctx.repos, ctx.now, ctx.dispatcher.settings).view(info.id)
    rt = RichText().h(_("Opinion groups")).p(i(info.content(ctx.locale).title))
    if view.groups is None:
        return ctx.reply(
            rt.p(
                _(
                    "The opinion groups are being computed from the latest votes. Ask again "
                    "with /groups in a minute."
                )
            )
        )
    texts = domain.idea_texts(ctx.repos, view.groups)
    rt = rt + domain.render_groups(view.groups, texts)
    if view.computed_at is not None:
        rt = rt.p(
            i(_("Computed {when}.").format(when=fmt_datetime(view.computed_at, info.timezone)))
        )
    return ctx.reply(rt)
