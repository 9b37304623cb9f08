"""What the scheduler's messages say: opening, extension, announcements, reminders, results.

Pure functions of domain values, called inside ``use_locale(recipient's locale)``; they return
the parts of one message (text, then chart and files) as ``OutboundMessage`` values with an
empty ``chat_id`` that the broadcast sender fills in. User text (announcements, contribution
excerpts) goes into spans as plain text: renderers escape it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.actions import pack
from bot.chart import Bar, bar_chart, shorten
from bot.domain import ConsultationInfo, Statistics
from bot.i18n import fmt_date, fmt_datetime, fmt_number, ngettext
from bot.i18n import gettext as _
from bot.messages import Attachment, Button, Keyboard, OutboundMessage, RichText, b, code, i
from bot.results import Results
from bot.router import Capabilities

TypedCommand = Callable[[str], str | None]
RESULTS_TOP = 5
EXCERPT = 100


def _finish(
    rt: RichText,
    keyboard: Keyboard,
    caps: Capabilities,
    typed: TypedCommand | None,
    attachment: Attachment | None = None,
) -> OutboundMessage:
    """Keyboards degrade to typed commands on channels without buttons (a broadcast is not
    an answer to a dialogue, so there are no numbered options to press)."""
    if keyboard and not caps.buttons:
        for row in keyboard:
            for button in row:
                if button.url:
                    rt = rt.opt("🔗 ", button.label, " ", button.url)
                elif button.action and typed is not None:
                    command = typed(button.action)
                    if command:
                        rt = rt.opt(code(command), " — ", button.label)
        keyboard = ()
    return OutboundMessage(chat_id="", text=rt, keyboard=keyboard, attachment=attachment)


def _citizen_buttons(info: ConsultationInfo, now: datetime, *, participate: bool) -> Keyboard:
    row: list[Button] = []
    if participate and info.allows(now).contribute:
        row.append(Button("✍️ " + _("Participate"), pack("part")))
    row.append(Button("💡 " + _("Ideas"), pack("ideas")))
    return (tuple(row),)


def _group_buttons(info: ConsultationInfo, caps: Capabilities) -> Keyboard:
    if caps.deep_link is None:
        return ()
    url = caps.deep_link.replace("{payload}", info.slug)
    return ((Button("✍️ " + _("Participate in private"), url=url),),)


def _footer(rt: RichText) -> RichText:
    return rt.p(i(_("To stop receiving news of this consultation: /reminders off")))


def _addressed(
    rt: RichText,
    info: ConsultationInfo,
    audience: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> OutboundMessage:
    """News for a citizen (with how to stop it and the menu) or for a group (with a link to
    take part in private)."""
    if audience == "citizen":
        return _finish(_footer(rt), _citizen_buttons(info, now, participate=True), caps, typed)
    return _finish(rt, _group_buttons(info, caps), caps, typed)


def opening(
    info: ConsultationInfo,
    locale: str,
    audience: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> list[OutboundMessage]:
    content = info.content(locale)
    rt = (
        RichText()
        .h("🟢 " + content.title)
        .p(
            _("The consultation is open until {date}.").format(
                date=fmt_date(info.closes_at, info.timezone)
            )
        )
    )
    if content.summary:
        rt = rt.p(content.summary)
    rt = rt.p(_("Answer the questions, and support and comment on the ideas of others."))
    return [_addressed(rt, info, audience, now, caps, typed)]


def extension(
    info: ConsultationInfo,
    locale: str,
    audience: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> list[OutboundMessage]:
    content = info.content(locale)
    rt = (
        RichText()
        .h("📅 " + content.title)
        .p(
            _("The consultation has been extended: it now closes on {date}.").format(
                date=fmt_datetime(info.closes_at, info.timezone)
            )
        )
    )
    return [_addressed(rt, info, audience, now, caps, typed)]


def pick_text(texts: dict[str, str], locale: str, default: str) -> str:
    return texts.get(locale) or texts.get(default) or next(iter(texts.values()), "")


def announcement(
    info: ConsultationInfo,
    payload: dict[str, Any],
    locale: str,
    audience: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> list[OutboundMessage]:
    texts = dict(payload.get("texts") or {})
    body = pick_text(texts, locale, str(payload.get("default") or info.document.language))
    rt = RichText().h("📣 " + info.content(locale).title).paragraphs(body)
    if audience == "citizen":
        return [_finish(_footer(rt), _citizen_buttons(info, now, participate=True), caps, typed)]
    return [_finish(rt, (), caps, typed)]


def left_line(closes_at: datetime, now: datetime, timezone: str) -> str:
    left = closes_at - now
    date = fmt_datetime(closes_at, timezone)
    if left >= timedelta(days=1):
        # Days of the consultation's calendar: 7 days before a closing is "7 days left" even
        # when a daylight-saving change makes it 167 or 169 hours.
        zone = ZoneInfo(timezone)
        wall = closes_at.astimezone(zone).replace(tzinfo=None) - now.astimezone(zone).replace(
            tzinfo=None
        )
        days = max(1, -(-wall // timedelta(days=1)))
        return ngettext(
            "{n} day left to take part: the consultation closes on {date}.",
            "{n} days left to take part: the consultation closes on {date}.",
            days,
        ).format(n=days, date=date)
    hours = max(1, -(-left // timedelta(hours=1)))
    return ngettext(
        "{n} hour left to take part: the consultation closes on {date}.",
        "{n} hours left to take part: the consultation closes on {date}.",
        hours,
    ).format(n=hours, date=date)


def _numbers(values: Sequence[int], locale: str) -> str:
    from babel.lists import format_list

    return format_list([str(v) for v in values], locale=locale)


def reminder(
    info: ConsultationInfo,
    payload: dict[str, Any],
    params: dict[str, Any],
    locale: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> list[OutboundMessage]:
    content = info.content(locale)
    created = datetime.fromisoformat(str(payload.get("created_at") or now.isoformat()))
    closes_at = datetime.fromisoformat(str(payload.get("closes_at") or info.closes_at.isoformat()))
    rt = RichText().h("⏰ " + content.title).p(b(left_line(closes_at, created, info.timezone)))
    total = int(params.get("questions") or len(content.questions))
    answered = sorted(int(n) for n in params.get("answered") or [])
    missing = [n for n in range(1, total + 1) if n not in answered]
    if not answered:
        rt = rt.p(
            ngettext(
                "You have not answered the question yet.",
                "You have not answered the {n} questions yet.",
                total,
            ).format(n=total)
        )
    elif missing:
        rt = rt.p(
            ngettext(
                "You answered question {list}.", "You answered questions {list}.", len(answered)
            ).format(list=_numbers(answered, locale)),
            " ",
            ngettext(
                "Question {list} is still waiting for your answer.",
                "Questions {list} are still waiting for your answers.",
                len(missing),
            ).format(list=_numbers(missing, locale)),
        )
    else:
        rt = rt.p(_("You answered every question: thank you!"))
    supports = int(params.get("supports") or 0)
    if supports:
        rt = rt.p(
            ngettext(
                "Your contributions have received {n} support so far.",
                "Your contributions have received {n} supports so far.",
                supports,
            ).format(n=fmt_number(supports))
        )
    unseen = int(params.get("unseen") or 0)
    if unseen:
        rt = rt.p(
            ngettext(
                "{n} idea from other participants is waiting for your opinion.",
                "{n} ideas from other participants are waiting for your opinion.",
                unseen,
            ).format(n=fmt_number(unseen))
        )
    keyboard = _citizen_buttons(info, now, participate=bool(missing))
    return [_finish(_footer(rt), keyboard, caps, typed)]


# --------------------------------------------------------------------------- results


def statistics_lines(stats: Statistics) -> list[tuple[str, int]]:
    return [
        (ngettext("{n} day of consultation", "{n} days of consultation", stats.days), stats.days),
        (ngettext("{n} participant", "{n} participants", stats.participants), stats.participants),
        (
            ngettext("{n} contribution", "{n} contributions", stats.contributions),
            stats.contributions,
        ),
        (ngettext("{n} support", "{n} supports", stats.supports), stats.supports),
        (ngettext("{n} visitor", "{n} visitors", stats.visitors), stats.visitors),
    ]


def results_text(
    info: ConsultationInfo, results: Results, locale: str, top: int, excerpt: int
) -> RichText:
    content = info.content(locale)
    rt = (
        RichText()
        .h("🏁 " + _("Results") + " — " + content.title)
        .p(
            i(
                _("The consultation closed on {date}.").format(
                    date=fmt_datetime(results.closes_at, info.timezone)
                )
            )
        )
    )
    for line, n in statistics_lines(results.statistics):
        number, _sep, rest = line.format(n="\x00").partition("\x00")
        rt = rt.li(number, b(fmt_number(n)), rest)
    questions = {q.key: q for q in content.questions}
    for q in results.questions:
        text = questions[q.key].text if q.key in questions else q.text
        rt = rt.p(b(_("Question {n}").format(n=q.position)), " — ", shorten(text, 200))
        if not q.contributions:
            rt = rt.li(i(_("No contributions.")))
        for c in q.top(top):
            rt = rt.li(
                b(f"{c.rank}. #{c.id}"),
                f" · 👍 {fmt_number(c.supports)} · 💬 {fmt_number(c.comments)} — ",
                shorten(c.text, excerpt),
            )
        if q.count > top:
            more = q.count - top
            rt = rt.li(
                i(
                    ngettext(
                        "and {n} more contribution", "and {n} more contributions", more
                    ).format(n=fmt_number(more))
                )
            )
    return rt


def results(
    info: ConsultationInfo,
    results: Results,
    files: dict[str, Attachment],
    locale: str,
    audience: str,
    now: datetime,
    caps: Capabilities,
    typed: TypedCommand | None,
) -> list[OutboundMessage]:
    """The ranking text (as many contributions per question as fit), the chart, and for
    channels and moderators the CSV and JSON the figures were computed from."""
    from bot.messages import render_plain

    limit = min(caps.max_length, 4096) - 200
    top, excerpt = RESULTS_TOP, EXCERPT
    rt = results_text(info, results, locale, top, excerpt)
    while len(render_plain(rt)) > limit and (top > 1 or excerpt > 40):
        if top > 1:
            top -= 1
        else:
            excerpt -= 20
        rt = results_text(info, results, locale, top, excerpt)
    if audience == "citizen":
        rt = rt.p(i(_("Thank you for taking part!")))
        keyboard: Keyboard = (
            (
                Button("📊 " + _("Statistics"), pack("stats")),
                Button("💡 " + _("Ideas"), pack("ideas")),
            ),
        )
    else:
        rt = rt.p(i(_("The CSV and JSON files below hold the data these figures come from.")))
        keyboard = ()
    parts = [_finish(rt, keyboard, caps, typed)]
    chart = files.get(f"chart-{locale}.png") or files.get(f"chart-{info.document.language}.png")
    if chart is not None:
        parts.append(
            OutboundMessage(
                chat_id="",
                attachment=Attachment(
                    chart.filename,
                    chart.mime_type,
                    chart.data,
                    caption=_("The most supported contributions"),
                ),
            )
        )
    if audience == "channel":
        for name, caption in (
            (f"results-{info.slug}.csv", _("The results as CSV: one row per contribution.")),
            (
                f"results-{info.slug}.json",
                _("The results as JSON: statistics, ranking and participants' pseudonyms."),
            ),
        ):
            file = files.get(name)
            if file is not None:
                parts.append(
                    OutboundMessage(
                        chat_id="",
                        attachment=Attachment(file.filename, file.mime_type, file.data, caption),
                    )
                )
    return parts


def chart_png(info: ConsultationInfo, results: Results, locale: str) -> bytes:
    content = info.content(locale)
    bars = [
        Bar(f"#{c.id} · Q{q.position} · {c.text}", c.supports)
        for q, c in results.ranked()[:10]
        if c.supports > 0
    ]
    return bar_chart(
        _("Most supported contributions — {title}").format(title=content.title),
        bars,
        xlabel=_("Supports"),
        empty=_("No contribution has received a support."),
    )
