"""News and the schedule: a citizen's subscription (offered on /start, then /reminders on|off and
/stop), and the moderators' commands (/schedule, /announce, /extend, /close, /remind,
/announce_here, /announce_stop, /broadcasts).

The ``remember_private_chat`` middleware records where each citizen can be reached in private
(and in which language), so broadcasts reach them on every platform.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from bot import errors
from bot.actions import pack
from bot.broadcasts import BroadcastService, broadcast_progress, progress_bar
from bot.consultation_file import ReminderPolicy
from bot.domain import ConsultationInfo, Phase
from bot.handlers import views
from bot.i18n import N_, SUPPORTED, fmt_datetime, fmt_number
from bot.i18n import gettext as _
from bot.messages import Button, OutboundMessage, RichText, b, code, i
from bot.params import CONFIRM, LANGUAGE_SPELLINGS, ON_OFF, Choice, Text, Word
from bot.router import Chats, Ctx, Reply, Role, Router
from bot.schedule import (
    EmptyAnnouncement,
    Kind,
    Lifecycle,
    NotInFuture,
    QuietHours,
    parse_local,
)
from storage.repositories_scheduler import SchedulerRepo

router = Router("scheduling")

MAX_ANNOUNCEMENT = 3500


def _language(code: str, locale: str) -> str:
    """A language's name in the reader's language ("anglais" for a French moderator)."""
    from babel import Locale

    return Locale.parse(code).get_display_name(locale) or code


def _sched(ctx: Ctx) -> SchedulerRepo:
    return SchedulerRepo(ctx.repos.db, ctx.repos.session)


# --------------------------------------------------------------------------- middleware


def remember_private_chat(
    ctx: Ctx, nxt: Callable[[Ctx], list[OutboundMessage]]
) -> list[OutboundMessage]:
    """Keep (private chat, language) of each citizen up to date: one primary-key read per
    private event, a write only when something changed."""
    if ctx.private and ctx.citizen.id is not None:
        ev = ctx.event.context
        sched = _sched(ctx)
        if sched.private_chat_key(ctx.citizen.id) != (ev.platform, ev.chat_id, ctx.locale):
            sched.remember_chat(ctx.citizen.id, ev.platform, ev.chat_id, ctx.locale, ctx.now)
    return nxt(ctx)


# --------------------------------------------------------------------------- subscriptions


def _news_keyboard() -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button("🔔 " + _("Yes, keep me informed"), pack("news", "on")),
            Button("🔕 " + _("No, thanks"), pack("news", "off")),
        ),
    )


def subscription_offer(ctx: Ctx, info: ConsultationInfo) -> list[OutboundMessage]:
    """The news choice, as a message of its own, for citizens who have not made it yet (in
    private only). Appended to the /start card."""
    if not ctx.private or ctx.citizen.id is None:
        return []
    if info.phase(ctx.now) in (Phase.CLOSED, Phase.ARCHIVED):
        return []  # no reminders of a closing that is past (issue 13.6)
    if _sched(ctx).subscription(ctx.citizen.id, info.id) is not None:
        return []
    rt = RichText().p(
        _(
            "Would you like to receive news of this consultation: announcements, a few "
            "reminders before it closes, and its results?"
        )
    )
    rt = rt.p(i(_("You can change your mind at any time with /reminders on or /reminders off.")))
    return [ctx.reply(rt, _news_keyboard())]


@router.action(
    "news",
    command="reminders",
    params=(Choice("choice", N_("on|off"), ON_OFF, optional=True),),
    help=N_("Receive the consultation's news and reminders (on) or not (off)"),
    chats=Chats.PRIVATE,
)
def reminders(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    assert ctx.citizen.id is not None
    sched = _sched(ctx)
    choice = (ctx.args[0] if ctx.args else "").lower()
    if choice not in ("on", "off"):
        current = sched.subscription(ctx.citizen.id, info.id)
        if current is None:
            state = _("You have not chosen yet whether to receive news of this consultation.")
        elif current.news:
            state = _("You receive the news of this consultation.")
        else:
            state = _("You do not receive the news of this consultation.")
        return ctx.reply(RichText().p(state), _news_keyboard())
    sched.set_subscription(ctx.citizen.id, info.id, choice == "on", ctx.now)
    if choice == "on":
        text = _("Done: you will receive the news of “{title}”. Type /reminders off to stop them.")
    else:
        text = _(
            "Done: you will not receive news of “{title}”. Type /reminders on if you change "
            "your mind."
        )
    title = info.content(ctx.locale).title
    return ctx.reply(RichText().p(text.format(title=title)), ((views.back_to_menu(),),), edit=True)


@router.command(
    "stop", help=N_("Stop every news message and reminder from this bot"), chats=Chats.PRIVATE
)
def stop(ctx: Ctx) -> Reply:
    assert ctx.citizen.id is not None
    sched = _sched(ctx)
    sched.unsubscribe_all(ctx.citizen.id, ctx.now)
    try:
        info = ctx.consultation()
    except errors.NoConsultation:
        info = None
    if info is not None:
        sched.set_subscription(ctx.citizen.id, info.id, False, ctx.now)
    return ctx.reply(
        RichText().p(
            _(
                "You will not receive any more news or reminders. You can still take part "
                "whenever you like; type /reminders on to receive the news again."
            )
        )
    )


# --------------------------------------------------------------------------- moderators


def _kind_name(kind: str, key: str, params: dict[str, object]) -> str:
    if kind == Kind.OPEN:
        return _("Opening")
    if kind == Kind.CLOSE:
        return _("Closing")
    if kind == Kind.RESULTS:
        return _("Results posted")
    if kind == Kind.ANNOUNCE:
        return _("Announcement")
    if key.startswith("remind:before:"):
        offset = str(params.get("offset", ""))
        return _("Reminder ({offset} before closing)").format(offset=offset)
    if key.startswith("remind:weekly:"):
        return _("Weekly reminder")
    return _("Reminder")


@router.command(
    "schedule",
    help=N_("What will happen when (opening, reminders, closing…)"),
    role=Role.MODERATOR,
)
def schedule(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    lifecycle = Lifecycle(ctx.repos, ctx.now)
    lifecycle.sync(info)
    content = info.content(ctx.locale)
    rt = (
        RichText()
        .h("🗓 " + _("Schedule") + " — " + content.title)
        .p(i(views.dates_line(info)), " · ", b(views.status_line(info, ctx.now)))
        .p(i(_("Times in {zone}.").format(zone=info.timezone)))
    )
    upcoming = lifecycle.upcoming(info)
    if not upcoming:
        rt = rt.p(_("Nothing is planned."))
    for row in upcoming[:20]:
        what = _kind_name(row.kind, row.key, row.params)
        if row.kind == Kind.ANNOUNCE:
            texts = dict(row.params.get("texts") or {})
            excerpt = next(iter(texts.values()), "")
            what += f" « {excerpt[:60]}{'…' if len(excerpt) > 60 else ''} »"
        rt = rt.li(b(fmt_datetime(row.due_at, info.timezone)), " — ", what)
    if len(upcoming) > 20:
        rt = rt.li(i(_("and {n} more").format(n=len(upcoming) - 20)))
    policy = info.document.reminders
    if policy is not None:
        quiet = QuietHours.of(policy)
        line = _("Reminders: at most {n} per citizen per week.").format(n=policy.max_per_week)
        if quiet is not None:
            line += " " + _("Quiet hours: {range}.").format(range=str(quiet))
        rt = rt.p(i(line))
    return ctx.reply(rt)


_AT = re.compile(
    r"(?is)^(?:at|à)\s+(\d{4}-\d{1,2}-\d{1,2})(?:[ T]+(\d{1,2}[:h]\d{2}))?(?:\s+(.*))?$"
)
_LANG_LINE = re.compile(r"^\[([a-z]{2})\]\s?(.*)$", re.S)


def parse_announcement(text: str, default: str) -> dict[str, str]:
    """``text`` with optional ``[en] …`` lines starting a translation → {language: text}."""
    texts: dict[str, list[str]] = {default: []}
    current = default
    for line in text.split("\n"):
        match = _LANG_LINE.match(line.strip())
        if match and match[1] in SUPPORTED:
            current = match[1]
            texts.setdefault(current, [])
            line = match[2]
        texts[current].append(line)
    return {
        lang: "\n".join(lines).strip() for lang, lines in texts.items() if "".join(lines).strip()
    }


@router.command(
    "announce",
    # Optional here: an empty announcement gets its own explanation from the handler.
    params=(Text("text", N_("[at DATE TIME] TEXT"), optional=True),),
    help=N_("Send an announcement to subscribers and announcement channels, now or later"),
    role=Role.MODERATOR,
)
def announce(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    rest = ctx.rest.strip()
    due: datetime | None = None
    match = _AT.match(rest)
    if match:
        rest = (match[3] or "").strip()
    texts = parse_announcement(rest, ctx.locale)
    if not texts:
        raise EmptyAnnouncement()
    if match:
        due = parse_local(match[1], match[2], ZoneInfo(info.timezone))
        if due <= ctx.now:
            raise NotInFuture(date=fmt_datetime(due, info.timezone))
    for body in texts.values():
        if len(body) > MAX_ANNOUNCEMENT:
            raise errors.TextTooLong(length=len(body), limit=MAX_ANNOUNCEMENT)
    langs = ", ".join(_language(code_, ctx.locale) for code_ in texts)
    if due is not None:
        Lifecycle(ctx.repos, ctx.now).schedule(
            info, Kind.ANNOUNCE, due, {"texts": texts, "default": ctx.locale}, ctx.citizen.id
        )
        return ctx.reply(
            RichText().p(
                _("Announcement scheduled for {date} ({languages}). See /schedule.").format(
                    date=fmt_datetime(due, info.timezone), languages=langs
                )
            )
        )
    service = BroadcastService(ctx.repos, ctx.now, admins=ctx.dispatcher.admins)
    if not service.news_audience(info):
        # Say why nobody would receive it, and how to change that; nothing is recorded.
        return ctx.reply(
            RichText()
            .p(
                _(
                    "Nobody would receive this announcement: no citizen has subscribed to the "
                    "news of this consultation yet, and it has no announcement channel. "
                    "Nothing was sent."
                )
            )
            .li(
                _(
                    "Citizens subscribe with /reminders on (it is offered after /start in a "
                    "private chat)."
                )
            )
            .li(
                _(
                    "To add an announcement channel, add the bot to a group or room and type "
                    "/announce_here there."
                )
            )
        )
    broadcast_id = service.announcement(info, texts, default=ctx.locale, by=ctx.citizen.id)
    total = _sched(ctx).counts([broadcast_id])[broadcast_id].total
    return ctx.reply(
        RichText().p(
            _(
                "Announcement #{id} is on its way to {n} recipients ({languages}). "
                "Follow it with /broadcasts."
            ).format(id=broadcast_id, n=fmt_number(total), languages=langs)
        )
    )


@router.command(
    "extend",
    params=(Word("date", N_("DATE")), Word("time", N_("TIME"), optional=True)),
    help=N_("Move the closing date of the open consultation later"),
    role=Role.MODERATOR,
)
def extend(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    if not ctx.args:
        raise IndexError  # usage
    zone = ZoneInfo(info.timezone)
    current = info.closes_at.astimezone(zone).time()
    closes_at = parse_local(ctx.args[0], ctx.args[1] if len(ctx.args) > 1 else None, zone, current)
    lifecycle = Lifecycle(ctx.repos, ctx.now)
    new = lifecycle.extend(info, closes_at)
    BroadcastService(ctx.repos, ctx.now).extension(new, by=ctx.citizen.id)
    return ctx.reply(
        RichText().p(
            _(
                "The consultation now closes on {date}. Subscribers and announcement channels "
                "are told; the reminders and the results follow the new date (see /schedule)."
            ).format(date=fmt_datetime(new.closes_at, new.timezone))
        )
    )


@router.action(
    "cls",
    command="close",
    params=(Choice("confirm", N_("confirm"), CONFIRM, optional=True),),
    help=N_("Close the consultation now and publish its results"),
    role=Role.MODERATOR,
)
def close(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    if info.phase(ctx.now) != Phase.OPEN:
        from bot.schedule import NotOpenNow

        raise NotOpenNow()
    if (ctx.args[0] if ctx.args else "") != "confirm":
        return ctx.reply(
            RichText().p(
                _(
                    "Close “{title}” now? Contributions, supports and comments stop at once and "
                    "the results are posted. This cannot be undone."
                ).format(title=info.content(ctx.locale).title)
            ),
            ((Button("🏁 " + _("Close it now"), pack("cls", "confirm")), views.back_to_menu()),),
        )
    new = Lifecycle(ctx.repos, ctx.now).close_now(info)
    return ctx.reply(
        RichText().p(
            _(
                "The consultation is closed as of {date}. The results are being computed and "
                "posted (follow them with /broadcasts)."
            ).format(date=fmt_datetime(new.closes_at, new.timezone))
        ),
        edit=True,
    )


@router.command(
    "remind",
    help=N_("Send a reminder now to subscribers who still have something to do"),
    role=Role.MODERATOR,
)
def remind(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    if info.phase(ctx.now) != Phase.OPEN:
        from bot.schedule import NotOpenNow

        raise NotOpenNow()
    policy = info.document.reminders or ReminderPolicy()
    zone = ZoneInfo(info.timezone)
    quiet = QuietHours.of(policy)
    due = ctx.now
    if quiet is not None and quiet.contains(ctx.now, zone):
        due = quiet.end_after(ctx.now, zone)
    Lifecycle(ctx.repos, ctx.now).schedule(
        info, Kind.REMINDER, due, {"rule": "manual"}, ctx.citizen.id
    )
    count = len(BroadcastService(ctx.repos, ctx.now).reminder_recipients(info, policy))
    if due > ctx.now:
        lead = _("It is quiet hours: the reminder will go out at {date}.").format(
            date=fmt_datetime(due, info.timezone)
        )
    else:
        lead = _("The reminder goes out in a moment.")
    return ctx.reply(
        RichText()
        .p(lead)
        .p(
            _(
                "Right now {n} subscribers have something left to do and are under the weekly "
                "limit of {max} reminders."
            ).format(n=fmt_number(count), max=policy.max_per_week)
        )
    )


@router.command(
    "announce_here",
    params=(Choice("lang", N_("fr|en"), LANGUAGE_SPELLINGS, optional=True),),
    help=N_("Make this group or room an announcement channel of the consultation"),
    role=Role.MODERATOR,
)
def announce_here(ctx: Ctx) -> Reply:
    if ctx.private:
        return ctx.reply(
            RichText().p(_("Type this command in the group or room that should get the news."))
        )
    info = ctx.consultation()
    locale = ctx.args[0].lower() if ctx.args else ctx.locale
    if locale not in SUPPORTED:
        return ctx.reply(
            RichText().p(_("I speak these languages: {codes}.").format(codes=", ".join(SUPPORTED)))
        )
    ev = ctx.event.context
    created = _sched(ctx).add_channel(
        info.id, ev.platform, ev.chat_id, locale, ctx.citizen.id, ctx.now
    )
    title = info.content(ctx.locale).title
    if created:
        text = _(
            "This chat is now an announcement channel of “{title}”: news and results will be "
            "posted here in {language}. /announce_stop to undo."
        )
    else:
        text = _(
            "This chat already is an announcement channel of “{title}”; news will be posted in "
            "{language}."
        )
    return ctx.reply(
        RichText().p(text.format(title=title, language=_language(locale, ctx.locale)))
    )


@router.command(
    "announce_stop",
    help=N_("Stop posting the consultation's news in this group or room"),
    role=Role.MODERATOR,
)
def announce_stop(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    ev = ctx.event.context
    removed = _sched(ctx).remove_channel(ev.platform, ev.chat_id, info.id)
    if removed:
        return ctx.reply(RichText().p(_("Done: no more news will be posted here.")))
    return ctx.reply(RichText().p(_("This chat is not an announcement channel.")))


_KINDS = {
    "announcement": N_("Announcement"),
    "reminder": N_("Reminder"),
    "opening": N_("Opening"),
    "extension": N_("Extension"),
    "results": N_("Results"),
    "answer": N_("Official answer"),  # an idea's answer, to its supporters (issue 15)
}


@router.command("broadcasts", help=N_("Progress of the latest broadcasts"), role=Role.MODERATOR)
def broadcasts(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    rows = broadcast_progress(ctx.repos, 8, info.id)
    rt = RichText().h("📨 " + _("Broadcasts"))
    if not rows:
        rt = rt.p(_("Nothing has been broadcast yet."))
    for p in rows:
        c = p.counts
        rt = rt.li(
            b(f"#{p.id} {_(_KINDS.get(p.kind, p.kind))}"),
            " · ",
            fmt_datetime(p.created_at, info.timezone),
            "\n",
            code(progress_bar(p.ratio, 16)),
            f" {round(p.ratio * 100)} % — ",
            _("{sent} of {total} sent, {failed} failed, {pending} pending").format(
                sent=fmt_number(c.sent),
                total=fmt_number(c.total),
                failed=fmt_number(c.failed),
                pending=fmt_number(c.pending),
            ),
        )
    return ctx.reply(rt)
