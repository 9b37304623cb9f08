"""Ideas: browse published contributions (top, new, discover), support them, comment on them
and read their comments. On channels without buttons, a 👍 reaction on an idea supports it and
a reply to an idea comments on it."""

from __future__ import annotations

from dataclasses import replace

from bot import errors
from bot.actions import pack
from bot.answers import answer_block
from bot.domain import ConsultationInfo
from bot.handlers import views
from bot.i18n import N_, fmt_datetime, ngettext
from bot.i18n import gettext as _
from bot.messages import (
    ActionPressed,
    Button,
    OutboundMessage,
    ReactionAdded,
    RichText,
    TextMessage,
    b,
    i,
)
from bot.moderation import ModerationService
from bot.params import Choice, Int, Page, Text
from bot.router import Chats, Ctx, Reply, Role, Router, State
from bot.services import published_contribution
from storage.repositories import BrowseSnapshot, ContributionRow

router = Router("ideas")

ORDERS = {"top": N_("most supported"), "new": N_("newest"), "discover": N_("discover")}
# Typed orders, in the languages citizens write in.
ORDER_SPELLINGS = {
    "top": ("populaires", "soutenues", "plus soutenues", "meilleures", "popular"),
    "new": ("nouvelles", "recentes", "nouveau", "newest", "recent"),
    "discover": ("decouvrir", "decouverte", "explore"),
}
MAX_QUESTIONS = 1000
SUPPORT_REACTIONS = {"👍", "👍️", "+1", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "❤️", "✅"}


def _moderates(ctx: Ctx, info: ConsultationInfo) -> bool:
    """Whether the viewer moderates this consultation (a reading route's role stays citizen)."""
    if ctx.role >= Role.MODERATOR:
        return True
    ev = ctx.event.context
    return info.id in ModerationService(ctx.repos, ctx.now, ctx.dispatcher.settings).moderated(
        ev.platform, ev.user_id
    )


def _idea_message(
    ctx: Ctx,
    info: ConsultationInfo,
    row: ContributionRow,
    *,
    edit: bool = False,
    notice: str | None = None,
    supported: bool | None = None,
) -> OutboundMessage:
    assert ctx.citizen.id is not None
    if supported is None:
        supported = bool(ctx.repos.supports.supported_ids(ctx.citizen.id, [row.id]))
    keyboard = views.idea_keyboard(
        row,
        supported=supported,
        own=row.citizen_id == ctx.citizen.id,
        comments_enabled=info.settings.comments and info.allows(ctx.now).comment,
    )
    if not info.allows(ctx.now).support:
        keyboard = tuple(
            tuple(btn for btn in r if btn.action and not btn.action.startswith(("sup:", "uns:")))
            for r in keyboard
        )
    if _moderates(ctx, info):
        # Moderators answer an idea from its card (bot.handlers.answers).
        keyboard = (*keyboard, (Button("📣 " + _("Official answer"), pack("ans", row.id)),))
    text = views.idea_text(row, info, ctx.locale)
    # The idea's official answer, if the moderators gave one (issue 15).
    text = text + answer_block(ctx.repos.answers.answer(row.id))
    return ctx.reply(
        text,
        keyboard,
        edit=edit,
        notice=notice,
        subject=("contribution", row.id),
    )


@router.action(
    "ideas",
    command="ideas",
    params=(
        Int("question", N_("QUESTION"), optional=True, high=MAX_QUESTIONS),
        Choice("order", N_("top|new|discover"), ORDER_SPELLINGS, optional=True),
        Page(N_("PAGE")),
    ),
    help=N_("Browse the published ideas, support them and comment"),
)
def ideas(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    content = info.content(ctx.locale)
    number = ctx.params.get("question")
    order = ctx.params.get("order") or "discover"
    page = ctx.params.get("page") or 1
    if number is None and len(info.question_ids) == 1:
        number = 1
    if number is None:
        rt = RichText().h(_("Ideas")).p(_("Which question?"))
        rows = []
        for n, q in enumerate(content.questions, 1):
            count = ctx.repos.contributions.count_published(info.question_ids[n - 1])
            rt = rt.li(b(f"{n}. "), q.text, i(f" ({count})"))
            rows.append(
                (
                    Button(
                        _("Question {n} ({count})").format(n=n, count=count),
                        pack("ideas", n, order, 1),
                    ),
                )
            )
        # Questions a re-import archived: their ideas stay listed (and counted in /stats).
        for n, archived in enumerate(info.archived, len(info.question_ids) + 1):
            count = ctx.repos.contributions.count_published(archived.id)
            if count:
                label = _("Archived question: {text}").format(text=archived.text(ctx.locale))
                rt = rt.li(b(f"{n}. "), i(label), i(f" ({count})"))
                label = "🗄 " + _("Question {n} ({count})").format(n=n, count=count)
                rows.append((Button(label, pack("ideas", n, order, 1)),))
        return ctx.reply(rt, (*rows, (views.back_to_menu(),)))
    if not 1 <= number <= views.question_count(info):
        raise errors.UnknownQuestion()
    return _page(ctx, info, number - 1, order, page)


def _discover_snapshot(ctx: Ctx, question_id: int, page: int) -> BrowseSnapshot:
    """The moment a "discover" browse of this question started (its first page), kept in the
    dialogue: later pages are ordered as of then, whatever the first pages marked as seen."""
    kept = ctx.data("discover")
    if page > 1 and isinstance(kept, dict) and kept.get("question") == question_id:
        try:
            return BrowseSnapshot(int(kept["seen"]), int(kept["support"]), int(kept["idea"]))
        except (KeyError, TypeError, ValueError):
            pass
    snapshot = ctx.repos.contributions.browse_snapshot()
    ctx.set_state(
        ctx.state,
        discover={
            "question": question_id,
            "seen": snapshot.seen,
            "support": snapshot.support,
            "idea": snapshot.contribution,
        },
    )
    return snapshot


def _page(ctx: Ctx, info: ConsultationInfo, index: int, order: str, page: int) -> Reply:
    assert ctx.citizen.id is not None
    qid, text, heading = views.question_at(info, index, ctx.locale)
    snapshot = _discover_snapshot(ctx, qid, page) if order == "discover" else None
    upto = snapshot.contribution if snapshot else None
    total = ctx.repos.contributions.count_published(qid, upto)
    pages = max(1, -(-total // views.PAGE_SIZE))
    page = min(page, pages)
    rows = ctx.repos.contributions.browse(
        qid, order, (page - 1) * views.PAGE_SIZE, views.PAGE_SIZE, ctx.citizen.id, snapshot
    )
    ctx.repos.contributions.mark_seen(ctx.citizen.id, [r.id for r in rows], ctx.now)
    head = RichText().p(b(heading), " — ", text)
    if not rows:
        head = head.p(i(_("No ideas yet for this question. Be the first!")))
        keyboard = ((Button("✍️ " + _("Participate"), pack("part")), views.back_to_menu()),)
        return ctx.reply(head, keyboard)
    out = [ctx.reply(head)]
    out.extend(_idea_message(ctx, info, row) for row in rows)
    nav: list[Button] = []
    if page > 1:
        nav.append(Button("◀ " + _("Previous"), pack("ideas", index + 1, order, page - 1)))
    if page < pages:
        nav.append(Button(_("Next") + " ▶", pack("ideas", index + 1, order, page + 1)))
    sorts = tuple(
        Button(("• " if key == order else "") + _(label), pack("ideas", index + 1, key, 1))
        for key, label in ORDERS.items()
    )
    footer = RichText().p(
        i(
            ngettext(
                "Page {page} of {pages} · {total} idea · order: {order}",
                "Page {page} of {pages} · {total} ideas · order: {order}",
                total,
            ).format(page=page, pages=pages, total=total, order=_(ORDERS[order]))
        )
    )
    if order == "discover":
        footer = footer.p(i(_("“Discover” shows first the ideas you have not seen yet.")))
    bottom: list[Button] = []
    if len(info.question_ids) > 1:
        other = (index + 1) % len(info.question_ids)
        bottom.append(
            Button(_("Question {n}").format(n=other + 1), pack("ideas", other + 1, order, 1))
        )
    bottom.append(views.back_to_menu())
    out.append(ctx.reply(footer, tuple(r for r in (tuple(nav), sorts, tuple(bottom)) if r)))
    return out


def _support_reply(
    ctx: Ctx, info: ConsultationInfo, contribution_id: int, supported: bool
) -> Reply:
    row = ctx.repos.contributions.with_counts(contribution_id)  # with the new support count
    assert row is not None
    if supported:
        notice = ngettext(
            "👍 Thank you, you support #{id} ({count} support in all).",
            "👍 Thank you, you support #{id} ({count} supports in all).",
            row.supports,
        ).format(id=contribution_id, count=row.supports)
    else:
        notice = _("Your support for #{id} is withdrawn.").format(id=contribution_id)
    if ctx.caps.edits and isinstance(ctx.event.payload, ActionPressed):
        # A button on the idea's own message: update its count in place.
        return _idea_message(ctx, info, row, edit=True, notice=notice, supported=supported)
    # Typed, a reaction, a numbered option: one message, the thanks above the updated card.
    card = _idea_message(ctx, info, row, supported=supported)
    return replace(card, text=RichText().p(notice) + card.text)


def _contribution_info(ctx: Ctx, contribution_id: int) -> ConsultationInfo:
    row = ctx.repos.contributions.get(contribution_id)
    if row is None:
        raise errors.UnknownContribution(id=contribution_id)
    return ctx.services.consultations.get(row.consultation_id)


@router.action(
    "idea",
    command="idea",
    params=(Int("idea", N_("NUMBER")),),
    help=N_("Open one idea: its card, to support it, comment, react or reply to it"),
)
def idea(ctx: Ctx) -> Reply:
    """One idea's own card: a Matrix 👍 reaction or a reply to it acts on that idea."""
    cid = ctx.params["idea"]
    info = _contribution_info(ctx, cid)
    published_contribution(ctx.repos, cid, info)  # withdrawn, hidden, pending: not shown
    row = ctx.repos.contributions.with_counts(cid)
    assert row is not None
    return _idea_message(ctx, info, row)


@router.action(
    "sup",
    command="support",
    params=(Int("idea", N_("NUMBER")),),
    phase="support",
    consent=True,
    help=N_("Support an idea"),
)
def support(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    cid = ctx.action.arg_int(0)
    info = _contribution_info(ctx, cid)
    ctx.services.supports.support(info, cid, ctx.citizen)
    return _support_reply(ctx, info, cid, True)


@router.action(
    "uns",
    command="unsupport",
    params=(Int("idea", N_("NUMBER")),),
    phase="support",
    consent=True,
    help=N_("Withdraw your support from an idea"),
)
def unsupport(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    cid = ctx.action.arg_int(0)
    info = _contribution_info(ctx, cid)
    ctx.services.supports.withdraw_support(info, cid, ctx.citizen)
    return _support_reply(ctx, info, cid, False)


@router.action(
    "com",
    command="comment",
    params=(Int("idea", N_("NUMBER")), Text("text", N_("text"), optional=True)),
    chats=Chats.PRIVATE,
    phase="comment",
    consent=True,
    quota="comment",
    help=N_("Comment on an idea"),
)
def comment(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    cid = ctx.action.arg_int(0)
    info = _contribution_info(ctx, cid)
    text = ctx.rest.partition(" ")[2].strip() if ctx.rest else ""
    if text:
        return _post_comment(ctx, info, cid, text)
    row = ctx.services.comments.can_comment(info, cid)
    ctx.set_state(State.COMMENTING, target=cid)
    return ctx.reply(
        RichText()
        .p(_("Your comment on idea #{id}:").format(id=cid))
        .quote(row.text[:300])
        .p(
            _("Write it in one message (up to {limit} characters).").format(
                limit=info.settings.max_comment_length
            )
        ),
        ((Button("✖ " + _("Cancel"), pack("cancel")),),),
    )


def _post_comment(ctx: Ctx, info: ConsultationInfo, cid: int, text: str) -> Reply:
    ctx.services.comments.comment(info, cid, ctx.citizen, text)
    ctx.set_state(State.IDLE, target=None)
    count = ctx.repos.comments.count(cid)
    return ctx.reply(
        RichText().p(_("Thank you, your comment on #{id} is published.").format(id=cid)),
        (
            (
                Button(_("Comments ({n})").format(n=count), pack("coms", cid, 1)),
                Button("💡 " + _("Ideas"), pack("ideas")),
            ),
        ),
    )


@router.state(
    State.COMMENTING, chats=Chats.PRIVATE, phase="comment", consent=True, quota="comment"
)
def commenting(ctx: Ctx) -> Reply:
    target = ctx.data("target")
    if not isinstance(target, int):
        raise errors.StaleAction()
    info = _contribution_info(ctx, target)
    return _post_comment(ctx, info, target, ctx.text)


@router.action(
    "coms",
    command="comments",
    params=(Int("idea", N_("NUMBER")), Page(N_("PAGE"))),
    help=N_("Read the comments on an idea"),
)
def comments(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    cid = ctx.params["idea"]
    page = ctx.params.get("page") or 1
    info = _contribution_info(ctx, cid)
    row = published_contribution(ctx.repos, cid, info)
    total = ctx.repos.comments.count(cid)
    pages = max(1, -(-total // views.COMMENTS_PAGE))
    page = max(1, min(page, pages))
    items = ctx.repos.comments.published(
        cid, (page - 1) * views.COMMENTS_PAGE, views.COMMENTS_PAGE
    )
    rt = RichText().p(b(_("Comments on idea #{id}").format(id=cid))).quote(row.text[:500])
    if not items:
        rt = rt.p(i(_("No comments yet.")))
    for c in items:
        rt = rt.p(i(f"c{c.id} · {fmt_datetime(c.created_at, info.timezone)}"), "\n", c.text)
    if items:
        rt = rt.p(i(_("To report a comment to the moderators: /report c followed by its number.")))
    nav: list[Button] = []
    if page > 1:
        nav.append(Button("◀ " + _("Previous"), pack("coms", cid, page - 1)))
    if page < pages:
        nav.append(Button(_("Next") + " ▶", pack("coms", cid, page + 1)))
    actions: list[Button] = []
    if info.settings.comments and info.allows(ctx.now).comment:
        actions.append(Button("💬 " + _("Comment"), pack("com", cid)))
    actions.append(Button("💡 " + _("Ideas"), pack("ideas")))
    return ctx.reply(rt, tuple(r for r in (tuple(nav), tuple(actions)) if r))


# --------------------------------------------------------------------------- reactions, replies


def _card_subject(ctx: Ctx, chat_id: str, message_id: str) -> int | None:
    """The idea a message of the bot shows (its card), if it shows one."""
    subject = ctx.repos.outbox.subject_of(ctx.event.context.platform, chat_id, message_id)
    if subject is None or subject[0] != "contribution":
        return None
    return subject[1]


def _reacted_idea(ctx: Ctx) -> dict[str, object] | None:
    """A support reaction (👍…) on an idea's card, or its removal."""
    payload = ctx.event.payload
    if not isinstance(payload, ReactionAdded) or payload.key.strip() not in SUPPORT_REACTIONS:
        return None
    cid = _card_subject(ctx, payload.target.chat_id, payload.target.message_id)
    return None if cid is None else {"idea": cid, "removed": payload.removed}


def _replied_idea(ctx: Ctx) -> dict[str, object] | None:
    """A text replying to an idea's card."""
    payload = ctx.event.payload
    if not isinstance(payload, TextMessage) or payload.reply_to is None:
        return None
    cid = _card_subject(ctx, payload.reply_to.chat_id, payload.reply_to.message_id)
    return None if cid is None else {"idea": cid}


@router.reaction(_reacted_idea, phase="support", consent=True)
def reaction(ctx: Ctx) -> Reply:
    cid = ctx.params["idea"]
    info = _contribution_info(ctx, cid)
    if ctx.params["removed"]:
        ctx.services.supports.withdraw_support(info, cid, ctx.citizen)
        return _support_reply(ctx, info, cid, False)
    ctx.services.supports.support(info, cid, ctx.citizen)
    return _support_reply(ctx, info, cid, True)


@router.text(_replied_idea, chats=Chats.PRIVATE, phase="comment", consent=True, quota="comment")
def reply_comment(ctx: Ctx) -> Reply:
    """A (Matrix or Telegram) reply to an idea's message comments on that idea."""
    info = _contribution_info(ctx, ctx.params["idea"])
    return _post_comment(ctx, info, ctx.params["idea"], ctx.text)
