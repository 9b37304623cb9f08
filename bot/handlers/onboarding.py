"""Onboarding: the consultation card, its rubrics, statistics, help and language."""

from __future__ import annotations

from bot import errors
from bot.actions import pack
from bot.handlers import privacy, scheduling, views
from bot.i18n import N_, SUPPORTED, fmt_number, language_name, set_locale
from bot.i18n import gettext as _
from bot.messages import Button, OutboundMessage, RichText, b, i
from bot.params import LANGUAGE_SPELLINGS, Choice, Page, Word
from bot.router import Ctx, Reply, Role, Router, State
from storage.repositories_sources import SourceFigures, by_source

router = Router("onboarding")


def _card(ctx: Ctx, *, edit: bool = False) -> OutboundMessage:
    info = ctx.consultation()
    keyboard = views.main_menu(info, ctx.now)
    if not ctx.private:
        # In groups, participation happens in private: offer a deep link instead of the menu.
        link = ctx.caps_deep_link(info.slug)
        keyboard = ((Button("✍️ " + _("Participate in private"), url=link),),) if link else ()
    return ctx.reply(views.card(info, ctx.now, ctx.locale), keyboard, edit=edit)


@router.command(
    "start",
    params=(Word("consultation", N_("consultation"), optional=True),),
    help=N_("Open the consultation (its card, dates and status)"),
)
def start(ctx: Ctx) -> Reply:
    source = None
    if ctx.args:
        info, source = ctx.services.consultations.resolve_start_payload(ctx.args[0])
        ctx.set_state(ctx.state, consultation=info.id)
    else:
        info = ctx.consultation()
    ctx.services.consultations.record_visit(info, ctx.citizen, source)
    return [_card(ctx), *privacy.notice_if_needed(ctx), *scheduling.subscription_offer(ctx, info)]


@router.action("menu", command="menu", help=N_("Show the consultation card and its menu"))
def menu(ctx: Ctx) -> Reply:
    return _card(ctx)


@router.action(
    "about",
    command="about",
    params=(Page(N_("PAGE")),),
    help=N_("Read the “About” rubric (extracts of the report)"),
)
def about(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    pages = info.content(ctx.locale).about
    if not pages:
        return ctx.reply(
            RichText().p(_("This consultation has no “About” pages.")), ((views.back_to_menu(),),)
        )
    if not ctx.args:
        rt = RichText().h(_("About")).p(_("Choose a page:"))
        for n, page in enumerate(pages, 1):
            rt = rt.li(f"{n}. ", page.title)
        rows = tuple(
            (Button(f"{n}. {page.title}"[:60], pack("about", n)),)
            for n, page in enumerate(pages, 1)
        )
        return ctx.reply(rt, (*rows, (views.back_to_menu(),)))
    n = int(ctx.args[0])
    if not 1 <= n <= len(pages):
        raise errors.NoSuchPage(n=n, total=len(pages))
    page = pages[n - 1]
    rt = (
        RichText()
        .h(page.title)
        .paragraphs(page.body)
        .p(i(_("Page {n} of {total}").format(n=n, total=len(pages))))
    )
    nav: list[Button] = []
    if n > 1:
        nav.append(Button("◀ " + _("Previous"), pack("about", n - 1)))
    if n < len(pages):
        nav.append(Button(_("Next") + " ▶", pack("about", n + 1)))
    return ctx.reply(
        rt, (tuple(nav), (Button("📖 " + _("All pages"), pack("about")), views.back_to_menu()))
    )


@router.action("testi", command="testimonials", help=N_("Read the testimonials"))
def testimonials(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    items = info.content(ctx.locale).testimonials
    rt = RichText().h(_("Testimonials"))
    if not items:
        rt = rt.p(_("No testimonials yet."))
    for t in items:
        rt = rt.p(b(t.author), *((" — ", i(t.role)) if t.role else ())).quote(t.quote)
    return ctx.reply(rt, ((Button("✍️ " + _("Participate"), pack("part")), views.back_to_menu()),))


@router.action("stats", command="stats", help=N_("See the consultation's statistics"))
def stats(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    figures = ctx.services.consultations.statistics(info)
    rt = views.statistics(info, figures, ctx.locale)
    if ctx.role >= Role.MODERATOR and ctx.private:
        # Moderators see more: where the visitors came from (deep links' sources).
        rt = rt + _by_source(by_source(ctx.repos.session, info.id), info.slug)
    return ctx.reply(rt, ((views.back_to_menu(),),))


def _by_source(rows: list[SourceFigures], slug: str) -> RichText:
    rt = RichText().p(b(_("By source")), " 🛡")
    if not rows:
        return rt.p(i(_("No visitor yet.")))
    for row in rows:
        name = row.source if row.source is not None else _("direct (no source)")
        rt = rt.li(
            b(name),
            " — ",
            _(
                "visitors: {visitors} · participants: {participants} · "
                "contributions: {contributions}"
            ).format(
                visitors=fmt_number(row.visitors),
                participants=fmt_number(row.participants),
                contributions=fmt_number(row.contributions),
            ),
        )
    return rt.p(
        i(
            _(
                "A citizen counts under the source of the link they first opened: "
                "/start {slug}-poster (or ?start={slug}-poster) counts under “poster”."
            ).format(slug=slug)
        )
    )


@router.action("help", command="help", role_aware=True, help=N_("List the commands you can use"))
def help_(ctx: Ctx) -> Reply:
    rt = RichText().h(_("Help")).p(_("Every button has a typed command. Here is what you can do:"))
    for spec in ctx.dispatcher.visible_commands(ctx.role):
        usage = f"/{spec.name} {_(spec.args) if spec.args else ''}".strip()
        marker = " 🛡" if spec.role >= Role.MODERATOR else ""
        rt = rt.li(b(usage), f" — {_(spec.help)}{marker}")
    return ctx.reply(rt, ((views.back_to_menu(),),))


@router.action(
    "lang",
    command="lang",
    params=(Choice("lang", N_("fr|en"), LANGUAGE_SPELLINGS, optional=True),),
    help=N_("Change the language"),
)
def lang(ctx: Ctx) -> Reply:
    if not ctx.args:
        buttons = tuple(
            Button(language_name(code).capitalize(), pack("lang", code)) for code in SUPPORTED
        )
        return ctx.reply(RichText().p(_("Choose your language:")), (buttons,))
    code = (ctx.args[0] or "").lower()
    if code not in SUPPORTED:
        return ctx.reply(
            RichText().p(_("I speak these languages: {codes}.").format(codes=", ".join(SUPPORTED)))
        )
    ctx.citizen.locale = code
    ctx.repos.session.add(ctx.citizen)
    ctx.locale = code
    set_locale(code)
    confirmation = ctx.reply(
        RichText().p(
            _("From now on I will speak {language} with you.").format(language=language_name(code))
        )
    )
    return [confirmation, _card(ctx)]


def fallback(ctx: Ctx) -> Reply:
    """Free text outside any dialogue: say what to do instead of guessing. In groups, the
    bot only speaks when spoken to with a command."""
    if not ctx.private:
        return None
    if ctx.state == State.IDLE and ctx.data("q") is not None:
        hint = _("To continue your participation, press Participate (or type /participate).")
    else:
        hint = _("I didn't understand. Use the buttons or type /help.")
    info = ctx.consultation()
    return ctx.reply(RichText().p(hint), views.main_menu(info, ctx.now))
