"""Citizens' rights in chat: the privacy notice (shown at first contact, accepted before taking
part), ``/mydata`` (a JSON file of everything stored about you) and ``/forget``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bot import errors
from bot.actions import pack
from bot.handlers import views
from bot.i18n import N_, fmt_datetime
from bot.i18n import gettext as _
from bot.messages import ActionPressed, Attachment, Button, OutboundMessage, RichText, b, i
from bot.params import YES, Choice, Word
from bot.privacy import NOTICE_VERSION, PrivacyService
from bot.router import Chats, Ctx, Reply, Router

router = Router("privacy")


@dataclass
class _Hints:
    """What this process already knows, to save a query per event (never a permission: a
    consent, once given for a version, stays given; a residue flag only delays a purge)."""

    residue: bool = True  # erasures may have left something to sweep (unknown at start)
    consented: set[int] = field(default_factory=set)  # citizen ids (current notice version)


def hints(ctx: Ctx) -> _Hints:
    """This dispatcher's hints (kept on the dispatcher: one per composition, none global)."""
    found = ctx.dispatcher.memo.get("privacy")
    if not isinstance(found, _Hints):
        found = ctx.dispatcher.memo["privacy"] = _Hints()
    return found


def service(ctx: Ctx) -> PrivacyService:
    return PrivacyService(ctx.repos, ctx.now, ctx.dispatcher.settings)


def notice_text(ctx: Ctx) -> RichText:
    months = ctx.dispatcher.settings.privacy_retention_months
    return (
        RichText()
        .h("🔒 " + _("Your data in this consultation"))
        .li(
            b(_("What we keep:")),
            " ",
            _(
                "your account id and name on this messenger (to recognise you), your language, "
                "what you write here (contributions, comments, reports), your supports, your "
                "choice about news, and where you are in the conversation."
            ),
        )
        .li(
            b(_("Why:")),
            " ",
            _(
                "to run the consultation and count participation. Contributions and comments "
                "are public, signed with a random pseudonym; statistics and open data never say "
                "who supported what."
            ),
        )
        .li(
            b(_("How long:")),
            " ",
            _(
                "until you ask to be forgotten (/forget), and at most {months} months after your "
                "last message."
            ).format(months=months),
        )
        .li(
            b(_("Your rights:")),
            " ",
            _("/mydata sends you a copy of everything; /forget erases it; /privacy shows this."),
        )
    )


def notice(ctx: Ctx, lead: str | None = None) -> OutboundMessage:
    rt = RichText()
    if lead:
        rt = rt.p(b(lead))
    rt = rt + notice_text(ctx)
    rt = rt.p(i(_("Reading stays open to everyone; accept to take part.")))
    return ctx.reply(rt, ((Button("✅ " + _("I accept"), pack("pvok", NOTICE_VERSION)),),))


def notice_if_needed(ctx: Ctx) -> list[OutboundMessage]:
    """At first contact (``/start`` in private): the notice, until it is accepted."""
    if not ctx.private or service(ctx).has_accepted(ctx.citizen):
        return []
    return [notice(ctx)]


def gate_reply(ctx: Ctx, resume: str | None) -> OutboundMessage:
    """What a citizen who has not accepted the notice gets when they try to take part."""
    ctx.set_state(ctx.state, privacy_resume=resume)
    return notice(ctx, _("Before you take part, please read and accept how your data is used."))


def _zone(ctx: Ctx) -> str:
    """The consultation's time zone (dates are shown in it), UTC without a consultation."""
    try:
        return ctx.consultation().timezone
    except errors.NoConsultation:
        return "UTC"


@router.action(
    "pv",
    command="privacy",
    help=N_("How your data is used, and your rights"),
)
def privacy(ctx: Ctx) -> Reply:
    when = service(ctx).accepted_at(ctx.citizen)
    if when is None:
        return notice(ctx)
    rt = notice_text(ctx).p(
        i(
            _("You accepted this notice on {date}.").format(
                date=fmt_datetime(when, _zone(ctx))
            )
        )
    )
    return ctx.reply(rt)


@router.action(
    "pvok",
    command="accept",
    params=(Word("version", N_("VERSION"), optional=True),),
    help=N_("Accept the privacy notice, to take part"),
)
def accept(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    version = ctx.action.arg(0)
    if version is not None and version != NOTICE_VERSION:
        return notice(ctx, _("The notice has changed since that message; here is the new one."))
    new = service(ctx).accept(ctx.citizen)
    if not new:
        return ctx.reply(RichText().p(_("You have already accepted the privacy notice.")))
    resume = ctx.data("privacy_resume")
    keyboard: tuple = ()
    if isinstance(resume, str):
        ctx.set_state(ctx.state, privacy_resume=None)
        keyboard = ((Button("▶ " + _("Continue"), resume),),)
    return ctx.reply(
        RichText().p(_("Thank you! You can now take part: contribute, support and comment.")),
        keyboard,
        edit=isinstance(ctx.event.payload, ActionPressed),
    )


@router.command(
    "mydata",
    help=N_("Receive a file with everything stored about you"),
    chats=Chats.PRIVATE,
)
def mydata(ctx: Ctx) -> Reply:
    data = service(ctx).my_data(ctx.citizen)
    content = json.dumps(data, ensure_ascii=False, indent=1, default=str).encode("utf-8")
    return ctx.reply(
        RichText().p(
            _("Here is everything stored about you, as a JSON file. Type /forget to erase it.")
        ),
        attachment=Attachment(
            "parlons-mydata.json", "application/json", content, caption="parlons-mydata.json"
        ),
    )


@router.action(
    "fgt",
    command="forget",
    params=(Choice("confirm", N_("yes"), YES, optional=True),),
    help=N_("Erase your personal data"),
    chats=Chats.PRIVATE,
)
def forget(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    if (ctx.action.arg(0) or "").lower() != "yes":
        return ctx.reply(
            RichText()
            .p(b(_("Erase your personal data?")))
            .p(
                _(
                    "Your account id, name, language and conversation are erased for good. Your "
                    "contributions, supports and comments stay, anonymous, so the consultation's "
                    "figures do not change; withdraw a contribution first (/mine) if you want it "
                    "gone."
                )
            ),
            (
                (
                    Button("🗑 " + _("Yes, erase my data"), pack("fgt", "yes")),
                    views.back_to_menu(),
                ),
            ),
        )
    ev = ctx.event.context
    inbox = ctx.repos.inbox.by_key(ev.platform, ev.event_id)
    service(ctx).erase(
        ctx.citizen,
        current_inbox_id=inbox.id if inbox is not None else None,
        current_dialogue=ctx.dialogue,
        current_chat=ev.chat_id if ctx.private else None,
    )
    hints(ctx).residue = True  # the farewell below is purged once delivered
    return ctx.reply(
        RichText().p(
            _(
                "Done: your personal data is erased. If you write again, you will be a new "
                "participant. Goodbye, and thank you for taking part!"
            )
        ),
        edit=isinstance(ctx.event.payload, ActionPressed),
    )
