"""Moderation in chat: reports, the moderation queue and its buttons (Approve / Hide / Restore /
Ban author), bans, moderators per consultation, the moderators' chat, the audit log, exports.

Moderators are recognised by immutable platform ids (``moderator`` table, or the settings'
administrators); ``bot.handlers.guards`` raises ``ctx.role`` for the consultation of the event,
and every service call checks again against the consultation of the object acted upon.

Messages to other chats than the event's (the moderators' chat, an author's private chat) are
written to the outbox directly, on the recipient's platform; their keyboards are not degraded
to numbered options (there is no dialogue to hold the numbers), so every such message also
shows its typed commands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bot import errors
from bot.actions import pack
from bot.domain import ConsultationInfo
from bot.exports import build_export
from bot.handlers import views
from bot.i18n import N_, current_locale, fmt_datetime, ngettext, use_locale
from bot.i18n import gettext as _
from bot.messages import (
    ActionPressed,
    Attachment,
    Button,
    CommandMessage,
    Keyboard,
    OutboundMessage,
    RichText,
    b,
    code,
    i,
)
from bot.moderation import (
    REPORT_REASONS,
    RESTORE_REASONS,
    Actor,
    Content,
    Decision,
    ModerationService,
    NotBanned,
    Target,
    parse_platform_id,
    reason_label,
)
from bot.params import MOD_SPELLINGS, ON_OFF, REPORT_SPELLINGS, Choice, Int, Text, Word
from bot.params import Target as TargetParam
from bot.router import Ctx, Reply, Role, Router
from storage.models import Citizen, Consultation, Contribution, OutboxMessage
from storage.models_moderation import Ban

router = Router("moderation")


# --------------------------------------------------------------------------- helpers


def service(ctx: Ctx) -> ModerationService:
    return ModerationService(ctx.repos, ctx.now, ctx.dispatcher.settings)


def actor(ctx: Ctx) -> Actor:
    ev = ctx.event.context
    return Actor(ctx.citizen, ev.platform, ev.user_id, ctx.role >= Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Recipient:
    platform: str
    chat_id: str
    locale: str


def post(ctx: Ctx, recipient: Recipient, message: OutboundMessage) -> None:
    """Write a message for another chat (any platform) to the outbox. Its keyboard is kept:
    channels without buttons ignore it, and the text always shows the typed commands."""
    message = replace(message, chat_id=recipient.chat_id, edit=None, answers=None)
    ctx.repos.outbox.add(
        OutboxMessage(
            platform=recipient.platform,
            chat_id=recipient.chat_id,
            inbox_id=None,
            message=message.to_json(),
            created_at=ctx.now,
        )
    )


def send_to(
    ctx: Ctx, recipients: list[Recipient], build: Callable[[], OutboundMessage]
) -> list[OutboundMessage]:
    """Build the message in each recipient's language; a recipient that is the event's own
    chat gets it as a reply (returned), the others through the outbox."""
    ev = ctx.event.context
    replies = []
    for r in recipients:
        with use_locale(r.locale):
            message = build()
        if (r.platform, r.chat_id) == (ev.platform, ev.chat_id):
            replies.append(replace(message, chat_id=ev.chat_id))
        else:
            post(ctx, r, message)
    return replies


def private_recipient(ctx: Ctx, citizen: Citizen) -> Recipient | None:
    """The citizen's private chat with the bot, if they ever wrote to it in private."""
    if citizen.platform_user_id is None or citizen.id is None:
        return None
    from storage.repositories_scheduler import SchedulerRepo

    row = SchedulerRepo(ctx.repos.db, ctx.repos.session).private_chat(citizen.id)
    if row is None:
        return None
    return Recipient(row.platform, row.chat_id, citizen.locale or row.locale)


def moderator_recipients(ctx: Ctx, consultation_id: int) -> list[Recipient]:
    """The consultation's moderators' chats; without one, the private chats of its moderators
    and of the administrators."""
    svc = service(ctx)
    default = ctx.dispatcher.settings.default_locale
    chats = svc.chats(consultation_id)
    if chats:
        return [Recipient(c.platform, c.chat_id, default) for c in chats]
    people = {(m.platform, m.platform_user_id) for m in svc.moderators(consultation_id)}
    for admin in ctx.dispatcher.admins:
        platform, _sep, user_id = admin.partition(":")
        if user_id:
            people.add((platform, user_id))
    out = []
    for platform, user_id in sorted(people):
        citizen = ctx.repos.citizens.by_platform_id(platform, user_id)
        recipient = private_recipient(ctx, citizen) if citizen is not None else None
        if recipient is not None:
            out.append(recipient)
    return out


def _reason(ctx: Ctx) -> str | None:
    """The reason given after the target: a code from a button, free text when typed."""
    if isinstance(ctx.event.payload, CommandMessage):
        rest = ctx.rest.strip().split(None, 1)
        return rest[1].strip() if len(rest) > 1 else None
    assert ctx.action is not None
    return ctx.action.arg(1)


def _reason_word() -> str:
    """The placeholder of a typed command's reason, as in its usage line."""
    return _("REASON")


def _pressed(ctx: Ctx) -> bool:
    return isinstance(ctx.event.payload, ActionPressed)


def _status(status: str) -> str:
    return views.status_name(status)


# --------------------------------------------------------------------------- cards


def decision_keyboard(target: Target, status: str) -> Keyboard:
    first: tuple[Button, ...]
    if status == "hidden":
        first = (Button("↩️ " + _("Restore"), pack("mrest", target.code)),)
    else:
        first = (
            Button("✅ " + _("Approve"), pack("mok", target.code)),
            Button("🙈 " + _("Hide"), pack("mhide", target.code)),
        )
    return (first, (Button("⛔ " + _("Ban author"), pack("mban", target.code)),))


def typed_commands(target: Target, status: str) -> RichText:
    t = target.code
    if status == "hidden":
        commands = [f"/restore {t} {_reason_word()}", f"/ban {t} {_reason_word()}"]
    else:
        commands = [f"/approve {t}", f"/hide {t} {_reason_word()}", f"/ban {t} {_reason_word()}"]
    return RichText().p(i(_("Typed commands:")), " ", code(" · ".join(commands)))


def content_card(
    ctx: Ctx, content: Content, headline: str, reasons: tuple[str, ...] = ()
) -> OutboundMessage:
    """A contribution or comment as moderators see it, with its decision buttons."""
    target = content.target
    info = ctx.services.consultations.get(content.consultation_id)
    rt = RichText().p(b(headline))
    where = info.content(current_locale()).title
    if isinstance(content.row, Contribution) and content.row.question_id in info.question_ids:
        n = info.question_index(content.row.question_id) + 1
        where = f"{where} · " + _("Question {n}").format(n=n)
    elif not isinstance(content.row, Contribution):
        parent = content.row.contribution_id
        where = f"{where} · " + _("on contribution #{id}").format(id=parent)
    rt = rt.p(
        i(where),
        "\n",
        _("Author: {pseudonym} · status: {status}").format(
            pseudonym=content.author.pseudonym, status=_status(content.status)
        ),
    )
    if reasons:
        rt = rt.p(
            _("Reports: {reasons}").format(reasons=", ".join(reason_label(r) for r in reasons))
        )
    rt = rt.quote(content.text[:1500])
    rt = rt + typed_commands(target, content.status)
    return OutboundMessage(
        chat_id="",
        text=rt,
        keyboard=decision_keyboard(target, content.status),
        subject=(target.kind, target.id),
    )


def notify_moderators(
    ctx: Ctx, content: Content, headline: Callable[[], str], reasons: tuple[str, ...] = ()
) -> list[OutboundMessage]:
    recipients = moderator_recipients(ctx, content.consultation_id)
    return send_to(ctx, recipients, lambda: content_card(ctx, content, headline(), reasons))


def notify_author(ctx: Ctx, content: Content, build: Callable[[], RichText]) -> None:
    """Tell the author (in their private chat and language) what happened to their text."""
    if content.author.id == ctx.citizen.id:
        return
    recipient = private_recipient(ctx, content.author)
    if recipient is None:
        return
    with use_locale(recipient.locale):
        message = OutboundMessage(chat_id=recipient.chat_id, text=build())
    post(ctx, recipient, message)


def _author_message(decision_action: str, content: Content, reason: str | None) -> RichText:
    target = content.target
    label = reason_label(reason)
    if target.kind == "comment":
        texts = {
            "hide": _("Your comment c{id} was hidden by the moderators. Reason: {reason}."),
            "auto": _(
                "Your comment c{id} was hidden after several reports ({reason}); a moderator "
                "will review it."
            ),
            "restore": _("Your comment c{id} is visible again. Reason: {reason}."),
            "approve": _("Your comment c{id} is published."),
        }
    else:
        texts = {
            "hide": _(
                "Your contribution #{id} was hidden by the moderators. Reason: {reason}. You "
                "can still read it with /mine."
            ),
            "auto": _(
                "Your contribution #{id} was hidden after several reports ({reason}); a "
                "moderator will review it."
            ),
            "restore": _("Your contribution #{id} is visible again. Reason: {reason}."),
            "approve": _(
                "Your contribution #{id} was approved by the moderators: it is published."
            ),
        }
    rt = RichText().p(texts[decision_action].format(id=target.id, reason=label))
    return rt.quote(content.text[:300])


def _decision_reply(ctx: Ctx, decision: Decision) -> OutboundMessage:
    target = decision.content.target
    status = decision.content.status
    lines = {
        "approve": _("✅ {target} approved: it is published."),
        "hide": _("🙈 {target} hidden. Reason: {reason}. The author is told."),
        "restore": _("↩️ {target} restored. Reason: {reason}. The author is told."),
    }
    rt = RichText().p(
        lines[decision.action].format(
            target=target.label().capitalize(), reason=reason_label(decision.reason)
        )
    )
    rt = rt.quote(decision.content.text[:300]) + typed_commands(target, status)
    return ctx.reply(
        rt, decision_keyboard(target, status), edit=_pressed(ctx), subject=(target.kind, target.id)
    )


def _reason_picker(
    ctx: Ctx, verb: str, target: Target, question: str, reasons: dict[str, str], typed: str
) -> OutboundMessage:
    rt = RichText().p(question)
    rt = rt.p(i(_("Or type it: {command}").format(command=typed)))
    rows = tuple(
        (Button(_(label), pack(verb, target.code, key)),) for key, label in reasons.items()
    )
    return ctx.reply(rt, rows, edit=_pressed(ctx))


# --------------------------------------------------------------------------- reports


@router.action(
    "rep",
    command="report",
    params=(
        TargetParam("target", N_("NUMBER")),
        Choice("reason", N_("reason"), REPORT_SPELLINGS, optional=True, rest=True),
    ),
    consent=True,
    help=N_("Report a contribution (12) or a comment (c7) to the moderators"),
)
def report(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    target = Target.parse(ctx.action.args[0])  # no argument: the usage line
    reason = (ctx.action.arg(1) or "").lower()
    svc = service(ctx)
    if reason not in REPORT_REASONS:
        content = svc.content(target)
        if content.status != "published":
            raise errors.ContributionNotAvailable(id=target.id)
        return _reason_picker(
            ctx,
            "rep",
            target,
            _("Why do you report {target}?").format(target=target.label()),
            REPORT_REASONS,
            f"/report {target.code} spam|offensive|offtopic|personal|other",
        )
    outcome = svc.report(ctx.citizen, target, reason)
    content = outcome.content
    replies: list[OutboundMessage] = []
    if outcome.auto_hidden:
        replies += notify_moderators(
            ctx,
            content,
            lambda: _(
                "⚑ {target} was hidden automatically after {n} reports: please review it."
            ).format(target=target.label().capitalize(), n=outcome.count),
            tuple(svc.open_reports(target)),
        )
        notify_author(
            ctx, content, lambda: _author_message("auto", content, f"auto:{outcome.count}")
        )
    else:
        replies += notify_moderators(
            ctx,
            content,
            lambda: _("⚑ New report on {target}: {reason}.").format(
                target=target.label(), reason=reason_label(reason)
            ),
            tuple(svc.open_reports(target)),
        )
    thanks = ctx.reply(
        RichText().p(
            _(
                "Thank you, your report on {target} is recorded. The moderators will review it."
            ).format(target=target.label())
        ),
        edit=_pressed(ctx),
    )
    return [thanks, *replies]


# --------------------------------------------------------------------------- decisions


@router.action(
    "mok",
    command="approve",
    params=(TargetParam("target", N_("NUMBER")), Text("reason", N_("reason"), optional=True)),
    help=N_("Publish a contribution awaiting moderation, or dismiss the reports on it"),
    role=Role.MODERATOR,
)
def approve(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    target = Target.parse(ctx.action.args[0])  # no argument: the usage line
    decision = service(ctx).approve(actor(ctx), target, _reason(ctx))
    content = decision.content
    if decision.action == "restore":
        notify_author(ctx, content, lambda: _author_message("restore", content, decision.reason))
    elif decision.before == "pending":
        notify_author(ctx, content, lambda: _author_message("approve", content, None))
    return _decision_reply(ctx, decision)


def _target_and_reason(
    ctx: Ctx, verb: str, command: str, question: str, reasons: dict[str, str]
) -> tuple[Target, str | None, OutboundMessage | None]:
    """The target of a moderation decision and its reason; without a reason, (after checking
    the moderator may act on it) the reply that asks for one."""
    assert ctx.action is not None
    target = Target.parse(ctx.action.args[0])  # no argument: the usage line
    reason = _reason(ctx)
    if reason:
        return target, reason, None
    svc = service(ctx)
    svc.require(actor(ctx), svc.content(target).consultation_id)
    picker = _reason_picker(
        ctx,
        verb,
        target,
        question.format(target=target.label()),
        reasons,
        f"/{command} {target.code} {_reason_word()}",
    )
    return target, None, picker


@router.action(
    "mhide",
    command="hide",
    params=(TargetParam("target", N_("NUMBER")), Text("reason", N_("REASON"), optional=True)),
    help=N_("Hide a contribution or comment, with a reason the author is told"),
    role=Role.MODERATOR,
)
def hide(ctx: Ctx) -> Reply:
    target, reason, ask = _target_and_reason(
        ctx, "mhide", "hide", _("Why hide {target}? The author will be told."), REPORT_REASONS
    )
    if ask is not None or reason is None:
        return ask
    svc = service(ctx)
    decision = svc.hide(actor(ctx), target, reason)
    content = decision.content
    notify_author(ctx, content, lambda: _author_message("hide", content, decision.reason))
    return _decision_reply(ctx, decision)


@router.action(
    "mrest",
    command="restore",
    params=(TargetParam("target", N_("NUMBER")), Text("reason", N_("REASON"), optional=True)),
    help=N_("Show a hidden contribution or comment again, with a reason"),
    role=Role.MODERATOR,
)
def restore(ctx: Ctx) -> Reply:
    target, reason, ask = _target_and_reason(
        ctx,
        "mrest",
        "restore",
        _("Why restore {target}? The author will be told."),
        RESTORE_REASONS,
    )
    if ask is not None or reason is None:
        return ask
    decision = service(ctx).restore(actor(ctx), target, reason)
    content = decision.content
    notify_author(ctx, content, lambda: _author_message("restore", content, decision.reason))
    return _decision_reply(ctx, decision)


# --------------------------------------------------------------------------- bans


@router.action(
    "mban",
    command="ban",
    params=(TargetParam("target", N_("NUMBER")), Text("reason", N_("REASON"), optional=True)),
    help=N_("Suspend the author of a contribution or comment from this consultation"),
    role=Role.MODERATOR,
)
def ban(ctx: Ctx) -> Reply:
    target, reason, ask = _target_and_reason(
        ctx,
        "mban",
        "ban",
        _("Why suspend the author of {target}? They will be told."),
        REPORT_REASONS,
    )
    if ask is not None or reason is None:
        return ask
    svc = service(ctx)
    outcome = svc.ban(actor(ctx), target, reason)
    info = ctx.services.consultations.get(outcome.consultation_id)
    recipient = private_recipient(ctx, outcome.author)
    if recipient is not None:
        with use_locale(recipient.locale):
            rt = RichText().p(
                _(
                    "A moderator has suspended your participation in “{title}”. Reason: "
                    "{reason}. You can still read the consultation."
                ).format(title=info.content(current_locale()).title, reason=reason_label(reason))
            )
            if outcome.changed:
                rt = rt.p(_("Your contributions and comments in it are hidden."))
            post(ctx, recipient, OutboundMessage(chat_id=recipient.chat_id, text=rt))
    hidden = len(outcome.changed)
    rt = RichText().p(
        _("⛔ The author of {target} ({pseudonym}) is suspended from this consultation.").format(
            target=target.label(), pseudonym=outcome.author.pseudonym
        )
    )
    rt = rt.p(
        ngettext(
            "{n} contribution or comment of theirs is hidden.",
            "{n} contributions or comments of theirs are hidden.",
            hidden,
        ).format(n=hidden),
        " ",
        _("Reason: {reason}.").format(reason=reason_label(reason)),
    )
    rt = rt.p(i(_("Lift it with: {command}").format(command=f"/unban {outcome.author.pseudonym}")))
    assert outcome.ban.id is not None
    return ctx.reply(
        rt,
        ((Button("🔓 " + _("Lift the ban"), pack("munban", outcome.ban.id)),),),
        edit=_pressed(ctx),
    )


@router.action(
    "munban",
    command="unban",
    params=(Word("who", N_("PSEUDONYM")), Text("reason", N_("reason"), optional=True)),
    help=N_("Lift a suspension (see /bans)"),
    role=Role.MODERATOR,
)
def unban(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    who = ctx.action.args[0]  # no argument: the usage line
    if who.isdigit() and _pressed(ctx):
        row = ctx.repos.session.get(Ban, int(who))
        if row is None:
            raise NotBanned(who=who)
        consultation_id = row.consultation_id
    else:
        consultation_id = ctx.consultation().id
    outcome = service(ctx).unban(
        actor(ctx), consultation_id, who, _reason(ctx) if not _pressed(ctx) else None
    )
    info = ctx.services.consultations.get(consultation_id)
    recipient = private_recipient(ctx, outcome.author)
    if recipient is not None:
        with use_locale(recipient.locale):
            rt = RichText().p(
                _("You can take part in “{title}” again.").format(
                    title=info.content(current_locale()).title
                )
            )
            if outcome.changed:
                rt = rt.p(
                    _(
                        "Your contributions and comments hidden by the suspension are visible "
                        "again."
                    )
                )
            post(ctx, recipient, OutboundMessage(chat_id=recipient.chat_id, text=rt))
    restored = len(outcome.changed)
    return ctx.reply(
        RichText().p(
            _("🔓 {pseudonym} may take part again.").format(pseudonym=outcome.author.pseudonym),
            " ",
            ngettext(
                "{n} contribution or comment is visible again.",
                "{n} contributions or comments are visible again.",
                restored,
            ).format(n=restored),
        ),
        edit=_pressed(ctx),
    )


@router.command("bans", help=N_("List the suspended participants"), role=Role.MODERATOR)
def bans(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = service(ctx)
    svc.require(actor(ctx), info.id)
    rows = svc.bans(info.id)
    rt = RichText().h(_("Suspended participants"))
    if not rows:
        return ctx.reply(rt.p(_("Nobody is suspended.")))
    keyboard = []
    for row, citizen in rows:
        rt = rt.li(
            b(citizen.pseudonym),
            f" — {fmt_datetime(row.created_at, info.timezone)} — {reason_label(row.reason)}",
        )
        assert row.id is not None
        keyboard.append((Button(f"🔓 {citizen.pseudonym}", pack("munban", row.id)),))
    return ctx.reply(rt, tuple(keyboard[:10]))


# --------------------------------------------------------------------------- queue


@router.command(
    "queue", help=N_("What awaits moderation: new contributions and reports"), role=Role.MODERATOR
)
def queue(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = service(ctx)
    svc.require(actor(ctx), info.id)
    items = svc.queue(info.id)
    if not items:
        return ctx.reply(RichText().p(_("Nothing awaits moderation. 🎉")))
    out = [ctx.reply(RichText().h(_("Moderation queue")).p(i(info.content(ctx.locale).title)))]
    for item in items:
        if item.content.status == "pending":
            headline = _("🕒 {target} awaits approval").format(
                target=item.content.target.label().capitalize()
            )
        else:
            headline = ngettext(
                "⚑ {target}: {n} report", "⚑ {target}: {n} reports", item.reports
            ).format(target=item.content.target.label().capitalize(), n=item.reports)
        card = content_card(ctx, item.content, headline, item.reasons)
        out.append(replace(card, chat_id=ctx.event.context.chat_id))
    return out


def notify_pending(ctx: Ctx) -> list[OutboundMessage]:
    """Pre-moderation: tell the moderators about the contributions this event created."""
    assert ctx.citizen.id is not None
    rows = ctx.repos.contributions.pending_created(ctx.citizen.id, ctx.now)
    out: list[OutboundMessage] = []
    svc = service(ctx)
    for cid in rows:
        content = svc.content(Target("contribution", cid))
        out += notify_moderators(ctx, content, _pending_headline(cid))
    return out


def _pending_headline(contribution_id: int) -> Callable[[], str]:
    return lambda: _("🕒 New contribution #{id} awaits approval").format(id=contribution_id)


# --------------------------------------------------------------------------- roles


def _consultation_row(ctx: Ctx, slug: str | None) -> tuple[ConsultationInfo, Consultation]:
    info = ctx.services.consultations.by_slug(slug.lower()) if slug else ctx.consultation()
    row = ctx.repos.consultations.get(info.id)
    assert row is not None
    return info, row


@router.command(
    "mod",
    params=(
        Choice("sub", N_("add|remove|list"), MOD_SPELLINGS, optional=True),
        Word("who", N_("platform:id"), optional=True),
        Word("consultation", N_("consultation"), optional=True),
    ),
    help=N_("Grant, revoke or list the moderators of a consultation"),
    role=Role.ADMIN,
)
def mod(ctx: Ctx) -> Reply:
    sub = (ctx.args[0] if ctx.args else "list").lower()
    svc = service(ctx)
    if sub == "list":
        info, _row = _consultation_row(ctx, ctx.args[1] if len(ctx.args) > 1 else None)
        rt = RichText().h(
            _("Moderators of “{title}”").format(title=info.content(ctx.locale).title)
        )
        moderators = svc.moderators(info.id)
        if not moderators:
            rt = rt.p(_("No moderator yet. Add one with /mod add platform:id."))
        for m in moderators:
            rt = rt.li(
                code(f"{m.platform}:{m.platform_user_id}"),
                f" — {fmt_datetime(m.created_at, info.timezone)}",
            )
        chats = svc.chats(info.id)
        rt = rt.p(
            i(
                ngettext(
                    "{n} moderators' chat registered (/modchat).",
                    "{n} moderators' chats registered (/modchat).",
                    len(chats),
                ).format(n=len(chats))
            )
        )
        return ctx.reply(rt)
    if sub not in ("add", "remove") or len(ctx.args) < 2:
        raise IndexError  # usage
    platform, user_id = parse_platform_id(ctx.args[1], ctx.event.context.platform)
    info, row = _consultation_row(ctx, ctx.args[2] if len(ctx.args) > 2 else None)
    title = info.content(ctx.locale).title
    who = f"{platform}:{user_id}"
    if sub == "add":
        if svc.add_moderator(actor(ctx), row, platform, user_id):
            text = _("{who} is now a moderator of “{title}”.")
        else:
            text = _("{who} was already a moderator of “{title}”.")
    elif svc.remove_moderator(actor(ctx), row, platform, user_id):
        text = _("{who} is no longer a moderator of “{title}”.")
    else:
        text = _("{who} was not a moderator of “{title}”.")
    return ctx.reply(RichText().p(text.format(who=who, title=title)))


@router.command(
    "modchat",
    params=(Choice("off", N_("off"), {"off": ON_OFF["off"]}, optional=True),),
    help=N_("Make this chat the moderators' chat of the consultation (or stop: off)"),
    role=Role.MODERATOR,
)
def modchat(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = service(ctx)
    svc.require(actor(ctx), info.id)
    ev = ctx.event.context
    title = info.content(ctx.locale).title
    if ctx.args and ctx.args[0].lower() == "off":
        svc.remove_chat(actor(ctx), info.id, ev.platform, ev.chat_id)
        return ctx.reply(
            RichText().p(
                _("This chat no longer receives the moderation queue of “{title}”.").format(
                    title=title
                )
            )
        )
    svc.add_chat(actor(ctx), info.id, ev.platform, ev.chat_id)
    return ctx.reply(
        RichText().p(
            _(
                "This chat now receives the moderation queue of “{title}”: new reports and, "
                "with pre-moderation, new contributions, with their buttons. Anyone here who is "
                "not a moderator cannot use them."
            ).format(title=title)
        )
    )


@router.command(
    "whoami", role_aware=True, help=N_("Show your immutable id (to be made a moderator)")
)
def whoami(ctx: Ctx) -> Reply:
    ev = ctx.event.context
    roles = {
        Role.ADMIN: _("administrator"),
        Role.MODERATOR: _("moderator of this consultation"),
        Role.CITIZEN: _("participant"),
    }
    return ctx.reply(
        RichText()
        .p(_("Your immutable id:"), " ", code(f"{ev.platform}:{ev.user_id}"))
        .p(_("Your role here: {role}.").format(role=roles[ctx.role]))
    )


# --------------------------------------------------------------------------- audit


@router.command(
    "audit",
    params=(Int("count", N_("N"), optional=True),),
    help=N_("The latest moderation and administration actions"),
    role=Role.MODERATOR,
)
def audit(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = service(ctx)
    svc.require(actor(ctx), info.id)
    try:
        limit = max(1, min(int(ctx.args[0]), 50)) if ctx.args else 15
    except ValueError:
        raise IndexError from None  # usage
    entries = svc.audit_log([info.id], limit)
    rt = RichText().h(_("Audit log")).p(i(info.content(ctx.locale).title))
    if not entries:
        return ctx.reply(rt.p(_("Nothing recorded yet.")))
    for e in entries:
        who = _("the system")
        if e.actor_id is not None:
            person = ctx.repos.citizens.get(e.actor_id)
            if person is not None and person.platform_user_id is not None:
                who = f"{person.platform}:{person.platform_user_id}"
            else:
                who = "[erased]"
        when = fmt_datetime(e.created_at, info.timezone)
        line = f"{when} · {e.actor_role} {who} · {e.action} {e.target}"
        if e.reason:
            line += f" — {reason_label(e.reason)}"
        rt = rt.li(line)
    return ctx.reply(rt)


# --------------------------------------------------------------------------- export


@router.command(
    "export",
    help=N_("Export the contributions, comments and statistics (CSV and JSON open data)"),
    role=Role.MODERATOR,
)
def export(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    svc = service(ctx)
    svc.require(actor(ctx), info.id)
    data = build_export(ctx.services, info, ctx.dispatcher.settings)
    svc.record(actor(ctx), info.id, "export", f"consultation:{info.slug}")
    out = [
        ctx.reply(
            RichText().p(
                _(
                    "The open data of “{title}”: contributions, comments and statistics, with "
                    "pseudonymous authors and never who supported what (format: "
                    "docs/open-data-format.md)."
                ).format(title=info.content(ctx.locale).title)
            )
        )
    ]
    for name, mime, content in data.files():
        out.append(ctx.reply(RichText(), attachment=Attachment(name, mime, content, caption=name)))
    return out
