"""Participation: answer the questions in turn (preview, confirm, edit, skip), and manage one's
own contributions. The dialogue row remembers where the citizen is, across detours and
restarts: ``q`` (question index), ``draft`` and ``skipped``."""

from __future__ import annotations

from typing import Any

from bot import errors
from bot.actions import pack
from bot.answers import answer_block, merged_block
from bot.domain import ConsultationInfo
from bot.handlers import similar, views
from bot.i18n import N_
from bot.i18n import gettext as _
from bot.messages import Button, CommandMessage, OutboundMessage, RichText, b, i
from bot.params import YES, Choice, Int
from bot.router import Chats, Ctx, Reply, Router, State
from bot.services import require

router = Router("participation")


def _open_info(ctx: Ctx) -> ConsultationInfo:
    info = ctx.consultation()
    require(info, ctx.now, "contribute")
    return info


def _next_question(ctx: Ctx, info: ConsultationInfo, start: int = 0) -> int | None:
    """The first question from ``start`` on (then from the first one) that the citizen has
    neither answered nor skipped."""
    assert ctx.citizen.id is not None
    answered = ctx.repos.contributions.answered_questions(ctx.citizen.id, info.id)
    skipped = set(ctx.data("skipped") or [])
    count = len(info.question_ids)
    for offset in range(count):
        index = (start + offset) % count
        qid = info.question_ids[index]
        if qid not in answered and qid not in skipped:
            return index
    return None


def _draft(ctx: Ctx) -> dict[str, Any]:
    """The contribution being previewed; a button of an old preview is stale, a typed
    /confirm with nothing previewed says so and how to take part."""
    draft = ctx.data("draft")
    if ctx.state != State.CONFIRMING or not draft:
        if isinstance(ctx.event.payload, CommandMessage):
            raise errors.NothingToConfirm()
        raise errors.StaleAction()
    return dict(draft)


def _ask(ctx: Ctx, info: ConsultationInfo, index: int, lead: str | None = None) -> OutboundMessage:
    ctx.set_state(State.ANSWERING, consultation=info.id, q=index, draft=None)
    question = info.content(ctx.locale).questions[index]
    rt = RichText()
    if lead:
        rt = rt.p(lead)
    rt = rt.p(b(_("Question {n} of {total}").format(n=index + 1, total=len(info.question_ids))))
    rt = rt.p(b(question.text))
    if question.hint:
        rt = rt.p(i(question.hint))
    rt = rt.p(
        _("Write your contribution in one message (up to {limit} characters).").format(
            limit=info.settings.max_contribution_length
        )
    )
    return ctx.reply(
        rt, ((Button("⏭ " + _("Skip"), pack("skip")), Button("✖ " + _("Cancel"), pack("cancel"))),)
    )


def _preview(ctx: Ctx, info: ConsultationInfo, draft: dict) -> OutboundMessage:
    if draft.get("edit"):  # the new version of a published contribution (/editidea)
        rt = (
            RichText()
            .p(_("The new version of your contribution #{id}:").format(id=draft["edit"]))
            .quote(draft["text"])
            .p(_("Replace the current version with it?"))
        )
    else:
        n = info.question_index(draft["question_id"]) + 1
        rt = (
            RichText()
            .p(_("Your contribution to question {n}:").format(n=n))
            .quote(draft["text"])
            .p(_("Publish it?"))
        )
    if info.settings.premoderation:
        rt = rt.p(i(_("A moderator will review it before it is published.")))
    # Similar published ideas, each with "support it instead" (issue 15, bot.handlers.similar).
    rt, instead = similar.preview_section(ctx, info, draft, rt)
    publish = "✅ " + (_("Publish mine anyway") if instead else _("Confirm"))
    return ctx.reply(
        rt,
        (
            *instead,
            (
                Button(publish, pack("ok")),
                Button("✏️ " + _("Edit"), pack("redo")),
                Button("✖ " + _("Cancel"), pack("cancel")),
            ),
        ),
    )


def _finished(ctx: Ctx, info: ConsultationInfo, lead: str | None = None) -> OutboundMessage:
    ctx.set_state(State.IDLE, q=None, draft=None)
    rt = RichText()
    if lead:
        rt = rt.p(lead)
    rt = rt.p(b(_("Thank you for taking part!"))).p(
        _("Now read the other citizens' ideas: support the ones you like and comment on them.")
    )
    return ctx.reply(
        rt,
        (
            (
                Button("💡 " + _("Ideas"), pack("ideas")),
                Button("🗂 " + _("My contributions"), pack("mine")),
            ),
            (views.back_to_menu(),),
        ),
    )


@router.action(
    "part",
    command="participate",
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Answer the consultation's questions (resumes where you left off)"),
)
def participate(ctx: Ctx) -> Reply:
    info = _open_info(ctx)
    draft = ctx.data("draft")
    if draft and draft.get("question_id") in info.question_ids:
        ctx.set_state(State.CONFIRMING)
        return _preview(ctx, info, draft)
    current = ctx.data("q")
    index = _next_question(ctx, info, current if isinstance(current, int) else 0)
    if index is None and ctx.data("skipped"):
        # Everything left was skipped: offer the skipped questions again.
        ctx.set_state(ctx.state, skipped=[])
        index = _next_question(ctx, info, 0)
    if index is None:
        return _finished(ctx, info, _("You have answered every question."))
    return _ask(ctx, info, index)


@router.state(State.ANSWERING, chats=Chats.PRIVATE, phase="contribute", consent=True)
def answering(ctx: Ctx) -> Reply:
    info = _open_info(ctx)
    index = ctx.data("q")
    if not isinstance(index, int) or not 0 <= index < len(info.question_ids):
        raise errors.StaleAction()
    text = ctx.services.participation.check_text(info, ctx.text)
    draft = {"question_id": info.question_ids[index], "text": text}
    ctx.set_state(State.CONFIRMING, draft=draft)
    return _preview(ctx, info, draft)


@router.action(
    "ok",
    command="confirm",
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Publish the contribution you are previewing"),
)
def confirm(ctx: Ctx) -> Reply:
    draft = _draft(ctx)
    info = _open_info(ctx)
    if draft.get("edit"):
        return _apply_edit(ctx, info, int(draft["edit"]), draft["text"])
    row = ctx.services.participation.submit_contribution(
        info, draft["question_id"], ctx.citizen, draft["text"]
    )
    if row.status == "pending":
        lead = _(
            "Thank you! Your contribution #{id} will be published once a moderator has "
            "reviewed it."
        ).format(id=row.id)
    else:
        lead = _("Thank you! Your contribution #{id} is published.").format(id=row.id)
    ctx.set_state(State.IDLE, draft=None)
    index = _next_question(ctx, info, info.question_index(draft["question_id"]) + 1)
    if index is None:
        return _finished(ctx, info, lead)
    return _ask(ctx, info, index, lead)


@router.action(
    "redo",
    command="edit",
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Rewrite the contribution you are previewing"),
)
def redo(ctx: Ctx) -> Reply:
    draft = _draft(ctx)
    info = _open_info(ctx)
    if draft.get("edit"):
        ctx.set_state(State.EDITING, target=int(draft["edit"]), draft=None)
        return ctx.reply(
            RichText().p(_("Write the new version of your contribution.")),
            ((Button("✖ " + _("Cancel"), pack("cancel")),),),
        )
    return _ask(
        ctx,
        info,
        info.question_index(draft["question_id"]),
        _("Write the new version of your contribution."),
    )


@router.action(
    "skip",
    command="skip",
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Skip the current question"),
)
def skip(ctx: Ctx) -> Reply:
    index = ctx.data("q")
    if ctx.state not in (State.ANSWERING, State.CONFIRMING) or not isinstance(index, int):
        raise errors.StaleAction()
    info = _open_info(ctx)
    skipped = list(ctx.data("skipped") or [])
    qid = info.question_ids[index]
    if qid not in skipped:
        skipped.append(qid)
    ctx.set_state(State.IDLE, skipped=skipped, draft=None)
    nxt = _next_question(ctx, info, index + 1)
    if nxt is None:
        return _finished(ctx, info, _("Question skipped."))
    return _ask(ctx, info, nxt, _("Question skipped."))


@router.action("cancel", command="cancel", help=N_("Cancel what you are doing"))
def cancel(ctx: Ctx) -> Reply:
    ctx.set_state(State.IDLE, draft=None, target=None)
    info = ctx.consultation()
    return ctx.reply(
        RichText().p(_("Cancelled. Nothing was published.")),
        views.main_menu(info, ctx.now),
        edit=True,
    )


# --------------------------------------------------------------------------- my contributions


@router.action(
    "mine",
    command="mine",
    chats=Chats.PRIVATE,
    help=N_("List your contributions, to edit or withdraw them"),
)
def mine(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    rows = ctx.services.participation.mine(info, ctx.citizen)
    if not rows:
        return ctx.reply(
            RichText().p(_("You have not contributed yet.")), views.main_menu(info, ctx.now)
        )
    can_change = info.allows(ctx.now).contribute
    out = [ctx.reply(RichText().h(_("My contributions")))]
    for row in rows:
        keyboard: tuple = ()
        if can_change and row.status not in ("hidden", "merged"):
            keyboard = (
                (
                    Button("✏️ " + _("Edit"), pack("medit", row.id)),
                    Button("🗑 " + _("Withdraw"), pack("mdel", row.id)),
                ),
            )
        # Where a merged duplicate went, and the official answer (issue 15, bot.answers).
        text = views.idea_text(row, info, ctx.locale, with_question=True)
        if row.status == "merged":
            text = text + merged_block(ctx.repos.answers.merged_into(row.id))
        text = text + answer_block(ctx.repos.answers.answer(row.id))
        out.append(ctx.reply(text, keyboard, subject=("contribution", row.id)))
    out.append(ctx.reply(RichText().p(_("That's all.")), ((views.back_to_menu(),),)))
    return out


@router.action(
    "medit",
    command="editidea",
    params=(Int("idea", N_("NUMBER")),),
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Rewrite one of your contributions"),
)
def edit_mine(ctx: Ctx) -> Reply:
    info = _open_info(ctx)
    assert ctx.action is not None
    contribution_id = ctx.action.arg_int(0)
    row = ctx.services.participation.own(info, contribution_id, ctx.citizen)
    if row.status == "hidden":
        raise errors.ContributionNotAvailable(id=contribution_id)
    ctx.set_state(State.EDITING, target=contribution_id)
    return ctx.reply(
        RichText()
        .p(_("Your contribution #{id} now reads:").format(id=row.id))
        .quote(row.text)
        .p(_("Write its new version in one message.")),
        ((Button("✖ " + _("Cancel"), pack("cancel")),),),
    )


@router.state(State.EDITING, chats=Chats.PRIVATE, phase="contribute", consent=True)
def editing(ctx: Ctx) -> Reply:
    info = _open_info(ctx)
    target = ctx.data("target")
    if not isinstance(target, int):
        raise errors.StaleAction()
    # Checked now (own, not hidden, length), applied only once confirmed after the preview.
    row = ctx.services.participation.own(info, target, ctx.citizen)
    if row.status == "hidden":
        raise errors.ContributionNotAvailable(id=target)
    text = ctx.services.participation.check_text(info, ctx.text)
    draft = {"edit": target, "question_id": row.question_id, "text": text}
    ctx.set_state(State.CONFIRMING, target=None, draft=draft)
    return _preview(ctx, info, draft)


def _apply_edit(ctx: Ctx, info: ConsultationInfo, target: int, text: str) -> Reply:
    row = ctx.services.participation.edit_contribution(info, target, ctx.citizen, text)
    ctx.set_state(State.IDLE, target=None, draft=None)
    return ctx.reply(
        RichText().p(_("Your contribution #{id} is updated.").format(id=row.id)),
        ((Button("🗂 " + _("My contributions"), pack("mine")), views.back_to_menu()),),
    )


@router.action(
    "mdel",
    command="withdraw",
    params=(Int("idea", N_("NUMBER")), Choice("confirm", N_("yes"), YES, optional=True)),
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
    help=N_("Withdraw one of your contributions (/withdraw 3 yes: without asking again)"),
)
def withdraw_ask(ctx: Ctx) -> Reply:
    if ctx.params.get("confirm") == "yes":
        return withdraw_confirmed(ctx)
    info = _open_info(ctx)
    row = ctx.services.participation.own(info, ctx.params["idea"], ctx.citizen)
    return ctx.reply(
        RichText()
        .p(
            _(
                "Withdraw your contribution #{id}? Its supports and comments will no longer count."
            ).format(id=row.id)
        )
        .quote(row.text),
        (
            (
                Button("🗑 " + _("Yes, withdraw it"), pack("mdelok", row.id)),
                Button(_("Keep it"), pack("mine")),
            ),
        ),
    )


@router.action(
    "mdelok",
    params=(Int("idea", N_("NUMBER")),),
    chats=Chats.PRIVATE,
    phase="contribute",
    consent=True,
)
def withdraw_confirmed(ctx: Ctx) -> Reply:
    info = _open_info(ctx)
    row = ctx.services.participation.withdraw_contribution(info, ctx.params["idea"], ctx.citizen)
    return ctx.reply(
        RichText().p(_("Your contribution #{id} is withdrawn.").format(id=row.id)),
        ((Button("🗂 " + _("My contributions"), pack("mine")), views.back_to_menu()),),
        edit=True,
    )
