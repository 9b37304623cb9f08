"""Message builders shared by the feature routers. Pure functions of domain values: they build
``RichText`` and keyboards, escaping is left to the renderers."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.actions import pack
from bot.domain import ConsultationInfo, Phase, Statistics
from bot.i18n import fmt_date, fmt_number, ngettext
from bot.i18n import gettext as _
from bot.messages import Button, Inline, Keyboard, RichText, b, i
from storage.repositories import ContributionRow

PAGE_SIZE = 5
COMMENTS_PAGE = 8


def status_line(info: ConsultationInfo, now: datetime) -> str:
    phase = info.phase(now)
    if phase == Phase.OPEN:
        left = info.closes_at - now
        days = -(-left // timedelta(days=1))  # started days count: 11.6 days left → 12
        if left >= timedelta(days=1):
            return ngettext("Open — closes in {n} day", "Open — closes in {n} days", days).format(
                n=days
            )
        hours = max(1, left // timedelta(hours=1))
        return ngettext("Open — closes in {n} hour", "Open — closes in {n} hours", hours).format(
            n=hours
        )
    if phase in (Phase.UPCOMING, Phase.DRAFT):
        return _("Opens on {date}").format(date=fmt_date(info.opens_at, info.timezone))
    return _("Closed since {date}").format(date=fmt_date(info.closes_at, info.timezone))


def dates_line(info: ConsultationInfo) -> str:
    return f"{fmt_date(info.opens_at, info.timezone)} – {fmt_date(info.closes_at, info.timezone)}"


def main_menu(info: ConsultationInfo, now: datetime) -> Keyboard:
    first_row: tuple[Button, ...] = (Button("💡 " + _("Ideas"), pack("ideas")),)
    if info.allows(now).contribute:
        first_row = (Button("✍️ " + _("Participate"), pack("part")), *first_row)
    return (
        first_row,
        (
            Button("📖 " + _("About"), pack("about")),
            Button("🗣 " + _("Testimonials"), pack("testi")),
        ),
        (Button("📊 " + _("Statistics"), pack("stats")), Button("❓ " + _("Help"), pack("help"))),
    )


def card(info: ConsultationInfo, now: datetime, locale: str) -> RichText:
    content = info.content(locale)
    rt = RichText().h(content.title).p(i(dates_line(info)), " · ", b(status_line(info, now)))
    rt = rt.paragraphs(content.framing)
    return rt


def question_label(info: ConsultationInfo, question_id: int, locale: str) -> tuple[int, str]:
    archived = info.archived_question(question_id)
    if archived is not None:  # numbered after the file's questions, as in /ideas
        return len(info.question_ids) + info.archived.index(archived) + 1, archived.text(locale)
    index = info.question_index(question_id)
    return index + 1, info.content(locale).questions[index].text


def question_count(info: ConsultationInfo) -> int:
    """The questions /ideas lists: the file's, then those archived by a re-import."""
    return len(info.question_ids) + len(info.archived)


def question_at(info: ConsultationInfo, index: int, locale: str) -> tuple[int, str, str]:
    """(id, text, heading) of the index-th question /ideas lists."""
    if index < len(info.question_ids):
        text = info.content(locale).questions[index].text
        return info.question_ids[index], text, _("Question {n}").format(n=index + 1)
    archived = info.archived[index - len(info.question_ids)]
    return archived.id, archived.text(locale), _("Archived question")


def idea_text(
    row: ContributionRow, info: ConsultationInfo, locale: str, *, with_question: bool = False
) -> RichText:
    header: list[Inline] = [
        b(f"#{row.id}"),
        f" · 👍 {fmt_number(row.supports)} · 💬 {fmt_number(row.comments)}",
    ]
    if row.status != "published":
        header.append(" · " + status_name(row.status))
    rt = RichText()
    if with_question:
        n, _q = question_label(info, row.question_id, locale)
        if info.archived_question(row.question_id) is not None:
            rt = rt.p(i(_("Archived question: {text}").format(text=_q)))
        else:
            rt = rt.p(i(_("Question {n}").format(n=n)))
    return rt.p(*header).paragraphs(row.text)


def status_name(status: str) -> str:
    names = {
        "published": _("published"),
        "pending": _("awaiting moderation"),
        "hidden": _("hidden by moderation"),
        "withdrawn": _("withdrawn"),
        "merged": _("merged into another idea"),
    }
    return names.get(status, status)


def idea_keyboard(
    row: ContributionRow, *, supported: bool, own: bool, comments_enabled: bool
) -> Keyboard:
    buttons: list[Button] = []
    if not own:
        if supported:
            buttons.append(Button("✅ " + _("Supported (withdraw)"), pack("uns", row.id)))
        else:
            buttons.append(Button("👍 " + _("Support"), pack("sup", row.id)))
    if comments_enabled:
        buttons.append(Button("💬 " + _("Comment"), pack("com", row.id)))
    if row.comments:
        buttons.append(
            Button(_("Comments ({n})").format(n=fmt_number(row.comments)), pack("coms", row.id, 1))
        )
    if not own:
        # Report to the moderators (issue 6, moderation): asks for a reason first.
        buttons.append(Button("⚑ " + _("Report"), pack("rep", row.id)))
    return (tuple(buttons),) if buttons else ()


def statistics(info: ConsultationInfo, stats: Statistics, locale: str) -> RichText:
    lines = [
        ngettext("{n} day of consultation", "{n} days of consultation", stats.days),
        ngettext("{n} participant", "{n} participants", stats.participants),
        ngettext("{n} contribution", "{n} contributions", stats.contributions),
        ngettext("{n} support", "{n} supports", stats.supports),
        ngettext("{n} visitor", "{n} visitors", stats.visitors),
    ]
    counts = [stats.days, stats.participants, stats.contributions, stats.supports, stats.visitors]
    rt = RichText().h(_("Statistics")).p(i(info.content(locale).title))
    for line, n in zip(lines, counts, strict=True):
        number, _sep, rest = line.format(n="\x00").partition("\x00")
        rt = rt.li(number, b(fmt_number(n)), rest)
    return rt


def back_to_menu() -> Button:
    return Button("🏠 " + _("Menu"), pack("menu"))
