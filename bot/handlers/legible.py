"""Reading thousands of ideas (issue 15): search, sorting, and supporting a similar idea
instead of publishing one's own.

- ``/search [q:N] [status:S] WORDS``: the ideas with every word (French or English forms),
  best match first, paged like ``/ideas``; the search is kept in the dialogue so the page
  buttons (and ``/searchpage N``) stay short.
- ``/sort``: unseen ideas dealt one at a time, 👍 support / 👎 disagree / ⏭ pass (buttons,
  ``/agree N``, ``/disagree N``, ``/pass N``, and 👍/👎/⏭ reactions on the dealt card); a
  disagreement is withdrawn with ``/undisagree N``. Only counts of disagreements are shown.
- ``/instead N`` (the preview's "support #N instead"): support the similar idea and drop the
  draft.
"""

from __future__ import annotations

from bot import errors
from bot.actions import pack
from bot.domain import ConsultationInfo
from bot.handlers import participation, views
from bot.handlers.ideas import _idea_message
from bot.i18n import N_, fmt_number, ngettext
from bot.i18n import gettext as _
from bot.legible import OpinionService
from bot.messages import Button, OutboundMessage, ReactionAdded, RichText, b, i
from bot.params import MAX_PAGE, Int, Text, fold
from bot.router import Chats, Ctx, Reply, Role, Router, State
from bot.services import published_contribution

router = Router("legible")

DISAGREE_REACTIONS = {"👎", "👎️", "-1", "👎🏻", "👎🏼", "👎🏽", "👎🏾", "👎🏿"}
AGREE_REACTIONS = {"👍", "👍️", "+1", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "❤️", "✅"}
PASS_REACTIONS = {"⏭", "⏭️", "⏩", "➡️"}
MAX_SEARCH = 200  # characters of a search kept in the dialogue
# Filters typed before the words: q:2 / question:2, status:pending / statut:en-attente.
QUESTION_KEYS = ("q", "question")
STATUS_KEYS = ("status", "statut", "s")
STATUSES = {
    "published": ("publiee", "publiees", "publie", "published"),
    "pending": ("attente", "enattente", "amoderer", "pending"),
    "hidden": ("masquee", "masquees", "cachee", "hidden"),
}
MODERATED_STATUSES = ("pending", "hidden")


class BadSearchFilter(errors.DomainError):
    msgid = N_(
        "I don't understand the filter “{word}”. Type for instance /search q:2 bike lanes, or "
        "/search status:pending words (moderators)."
    )


class EmptySearch(errors.DomainError):
    msgid = N_(
        "Which words? Type for instance /search bike lanes (add q:2 to search question 2 only)."
    )


class NoSearch(errors.DomainError):
    msgid = N_("There is no search to continue: type /search followed by words.")


# --------------------------------------------------------------------------- search


def _parse_search(ctx: Ctx, typed: str) -> dict:
    """{"w": words, "q": question number or None, "s": status} from the typed line."""
    question: int | None = None
    status = "published"
    words: list[str] = []
    for token in typed.split():
        key, sep, value = token.partition(":")
        folded = fold(key)
        if sep and folded in QUESTION_KEYS:
            if not value.isdigit() or not 1 <= int(value) <= views.question_count(
                ctx.consultation()
            ):
                raise errors.UnknownQuestion()
            question = int(value)
        elif sep and folded in STATUS_KEYS:
            found = [k for k, names in STATUSES.items() if fold(value) in (fold(k), *names)]
            if not found:
                raise BadSearchFilter(word=token[:40])
            status = found[0]
        else:
            words.append(token)
    text = " ".join(words)[:MAX_SEARCH]
    if not text.strip():
        raise EmptySearch()
    return {"w": text, "q": question, "s": status}


@router.command(
    "search",
    params=(Text("words", N_("[q:QUESTION] WORDS")),),
    role_aware=True,
    help=N_("Search the ideas by words (q:2 for question 2 only)"),
)
def search(ctx: Ctx) -> Reply:
    query = _parse_search(ctx, ctx.params["words"])
    if query["s"] in MODERATED_STATUSES and ctx.role < Role.MODERATOR:
        raise errors.NotAModerator()
    ctx.set_state(ctx.state, search=query)
    return _results(ctx, query, 1)


@router.action(
    "srchp",
    command="searchpage",
    params=(Int("page", N_("PAGE"), high=MAX_PAGE),),
    role_aware=True,
    help=N_("Another page of your last search"),
)
def search_page(ctx: Ctx) -> Reply:
    query = ctx.data("search")
    if not isinstance(query, dict) or not query.get("w"):
        raise NoSearch()
    if query.get("s") in MODERATED_STATUSES and ctx.role < Role.MODERATOR:
        raise errors.NotAModerator()
    return _results(ctx, query, ctx.params["page"])


def _results(ctx: Ctx, query: dict, page: int) -> Reply:
    assert ctx.citizen.id is not None
    info = ctx.consultation()
    number = query.get("q")
    question_id = None
    if number is not None:
        if not 1 <= int(number) <= views.question_count(info):
            raise errors.UnknownQuestion()
        question_id = views.question_at(info, int(number) - 1, ctx.locale)[0]
    status = query.get("s") or "published"
    found = ctx.repos.legible.search(
        info.id,
        query["w"],
        question_id=question_id,
        statuses=(status,),
        offset=(page - 1) * views.PAGE_SIZE,
        limit=views.PAGE_SIZE,
    )
    if found.total and not found.ids:  # a page past the end: the last one
        pages = max(1, -(-found.total // views.PAGE_SIZE))
        return _results(ctx, query, pages) if page > pages else None
    where = _("question {n}").format(n=number) if number else _("all questions")
    head = RichText().p(
        b(_("Search: “{words}”").format(words=query["w"])),
        " — ",
        i(where),
        *((" · ", i(views.status_name(status))) if status != "published" else ()),
    )
    if not found.ids:
        head = head.p(_("No idea matches these words. Try other words, or fewer of them."))
        return ctx.reply(
            head, ((Button("💡 " + _("Ideas"), pack("ideas")), views.back_to_menu()),)
        )
    rows = [r for r in (ctx.repos.contributions.with_counts(cid) for cid in found.ids) if r]
    if status == "published":
        ctx.repos.contributions.mark_seen(ctx.citizen.id, [r.id for r in rows], ctx.now)
    out: list[OutboundMessage] = [ctx.reply(head)]
    for row in rows:
        if status == "published":
            out.append(_idea_message(ctx, info, row))
        else:
            out.append(ctx.reply(views.idea_text(row, info, ctx.locale, with_question=True)))
    pages = max(1, -(-found.total // views.PAGE_SIZE))
    nav: list[Button] = []
    if page > 1:
        nav.append(Button("◀ " + _("Previous"), pack("srchp", page - 1)))
    if page < pages:
        nav.append(Button(_("Next") + " ▶", pack("srchp", page + 1)))
    footer = RichText().p(
        i(
            ngettext(
                "Page {page} of {pages} · {total} idea found",
                "Page {page} of {pages} · {total} ideas found",
                found.total,
            ).format(page=page, pages=pages, total=found.total)
        )
    )
    out.append(ctx.reply(footer, tuple(r for r in (tuple(nav), (views.back_to_menu(),)) if r)))
    return out


# --------------------------------------------------------------------------- sorting


def _opinions(ctx: Ctx) -> OpinionService:
    return OpinionService(ctx.repos, ctx.services, ctx.now)


def _info_of(ctx: Ctx, cid: int) -> ConsultationInfo:
    row = ctx.repos.contributions.get(cid)
    if row is None:
        raise errors.UnknownContribution(id=cid)
    return ctx.services.consultations.get(row.consultation_id)


def _deal(ctx: Ctx, info: ConsultationInfo, lead: str | None = None) -> Reply:
    """The next idea to sort, as a card with 👍 / 👎 / ⏭; or the end of the deck."""
    assert ctx.citizen.id is not None
    cid = ctx.repos.legible.next_unsorted(info.id, ctx.citizen.id)
    if cid is None:
        rt = RichText()
        if lead:
            rt = rt.p(lead)
        rt = rt.p(b(_("You have sorted every idea. Thank you!"))).p(
            _("New ideas will be dealt to you as they are published: come back with /sort.")
        )
        return ctx.reply(rt, ((Button("💡 " + _("Ideas"), pack("ideas")), views.back_to_menu()),))
    left = ctx.repos.legible.unsorted_count(info.id, ctx.citizen.id)
    ctx.repos.legible.dealt(ctx.citizen.id, cid, ctx.now)
    ctx.repos.contributions.mark_seen(ctx.citizen.id, [cid], ctx.now)
    row = ctx.repos.contributions.with_counts(cid)
    assert row is not None
    rt = RichText()
    if lead:
        rt = rt.p(lead)
    rt = rt + views.idea_text(row, info, ctx.locale, with_question=True)
    against = ctx.repos.legible.disagreements(cid)
    if against:
        rt = rt.p(
            i(
                ngettext("👎 {n} disagreement", "👎 {n} disagreements", against).format(
                    n=fmt_number(against)
                )
            )
        )
    rt = rt.p(
        i(
            ngettext(
                "{n} idea left to sort (this one included).",
                "{n} ideas left to sort (this one included).",
                left,
            ).format(n=fmt_number(left))
        )
    )
    keyboard = (
        (
            Button("👍 " + _("Support"), pack("sagr", cid)),
            Button("👎 " + _("Disagree"), pack("sdis", cid)),
            Button("⏭ " + _("Pass"), pack("spas", cid)),
        ),
        (views.back_to_menu(),),
    )
    return ctx.reply(rt, keyboard, subject=("sort", cid))


@router.action(
    "sort",
    command="sort",
    chats=Chats.PRIVATE,
    phase="support",
    consent=True,
    help=N_("Sort the ideas one at a time: support, disagree or pass"),
)
def sort(ctx: Ctx) -> Reply:
    return _deal(ctx, ctx.consultation())


@router.action(
    "sagr",
    command="agree",
    params=(Int("idea", N_("NUMBER")),),
    chats=Chats.PRIVATE,
    phase="support",
    consent=True,
    help=N_("While sorting: support this idea and see the next one"),
)
def agree(ctx: Ctx) -> Reply:
    cid = ctx.params["idea"]
    info = _info_of(ctx, cid)
    _opinions(ctx).agree(info, cid, ctx.citizen)
    return _deal(ctx, info, _("👍 You support #{id}.").format(id=cid))


@router.action(
    "sdis",
    command="disagree",
    params=(Int("idea", N_("NUMBER")),),
    phase="support",
    consent=True,
    help=N_("Disagree with an idea (only the number of disagreements is shown)"),
)
def disagree(ctx: Ctx) -> Reply:
    cid = ctx.params["idea"]
    info = _info_of(ctx, cid)
    _opinions(ctx).disagree(info, cid, ctx.citizen)
    lead = _("👎 Your disagreement with #{id} is recorded (/undisagree {id} to withdraw it).")
    lead = lead.format(id=cid)
    if not ctx.private:
        return ctx.reply(RichText().p(lead))
    return _deal(ctx, info, lead)


@router.action(
    "spas",
    command="pass",
    params=(Int("idea", N_("NUMBER")),),
    chats=Chats.PRIVATE,
    phase="support",
    consent=True,
    help=N_("While sorting: pass this idea and see the next one"),
)
def pass_(ctx: Ctx) -> Reply:
    assert ctx.citizen.id is not None
    cid = ctx.params["idea"]
    info = _info_of(ctx, cid)
    published_contribution(ctx.repos, cid, info)
    ctx.repos.legible.dealt(ctx.citizen.id, cid, ctx.now)
    return _deal(ctx, info, _("⏭ Passed #{id}.").format(id=cid))


@router.action(
    "undis",
    command="undisagree",
    params=(Int("idea", N_("NUMBER")),),
    phase="support",
    consent=True,
    help=N_("Withdraw your disagreement with an idea"),
)
def undisagree(ctx: Ctx) -> Reply:
    cid = ctx.params["idea"]
    info = _info_of(ctx, cid)
    _opinions(ctx).withdraw(info, cid, ctx.citizen)
    return ctx.reply(
        RichText().p(_("Your disagreement with #{id} is withdrawn.").format(id=cid)),
        ((Button("🔀 " + _("Sort the ideas"), pack("sort")), views.back_to_menu()),),
    )


# --------------------------------------------------------------------------- reactions


def _reacted(ctx: Ctx) -> dict[str, object] | None:
    """👍 / 👎 / ⏭ on a card dealt by /sort; 👎 on any idea's card."""
    payload = ctx.event.payload
    if not isinstance(payload, ReactionAdded):
        return None
    key = payload.key.strip()
    subject = ctx.repos.outbox.subject_of(
        ctx.event.context.platform, payload.target.chat_id, payload.target.message_id
    )
    if subject is None:
        return None
    kind, cid = subject
    if kind == "sort":
        for opinion, keys in (
            ("agree", AGREE_REACTIONS),
            ("disagree", DISAGREE_REACTIONS),
            ("pass", PASS_REACTIONS),
        ):
            if key in keys:
                return {"idea": cid, "opinion": opinion, "removed": payload.removed, "deal": True}
        return None
    if kind == "contribution" and key in DISAGREE_REACTIONS:
        return {"idea": cid, "opinion": "disagree", "removed": payload.removed, "deal": False}
    return None


@router.reaction(_reacted, phase="support", consent=True)
def sort_reaction(ctx: Ctx) -> Reply:
    cid = ctx.params["idea"]
    opinion = ctx.params["opinion"]
    info = _info_of(ctx, cid)
    opinions = _opinions(ctx)
    if ctx.params["removed"]:
        if opinion == "disagree":
            opinions.withdraw(info, cid, ctx.citizen)
            text = _("Your disagreement with #{id} is withdrawn.").format(id=cid)
        elif opinion == "agree":
            ctx.services.supports.withdraw_support(info, cid, ctx.citizen)
            text = _("Your support for #{id} is withdrawn.").format(id=cid)
        else:
            return None
        return ctx.reply(RichText().p(text))
    if opinion == "agree":
        opinions.agree(info, cid, ctx.citizen)
        lead = _("👍 You support #{id}.").format(id=cid)
    elif opinion == "disagree":
        opinions.disagree(info, cid, ctx.citizen)
        lead = _(
            "👎 Your disagreement with #{id} is recorded (/undisagree {id} to withdraw it)."
        ).format(id=cid)
    else:
        assert ctx.citizen.id is not None
        ctx.repos.legible.dealt(ctx.citizen.id, cid, ctx.now)
        lead = _("⏭ Passed #{id}.").format(id=cid)
    if ctx.params["deal"] and ctx.private:
        return _deal(ctx, info, lead)
    return ctx.reply(RichText().p(lead))


# --------------------------------------------------------------------------- similar ideas


@router.action(
    "sins",
    command="instead",
    params=(Int("idea", N_("NUMBER")),),
    chats=Chats.PRIVATE,
    phase="support",
    consent=True,
    help=N_("Support a similar idea instead of publishing your draft"),
)
def instead(ctx: Ctx) -> Reply:
    draft = ctx.data("draft")
    cid = ctx.params["idea"]
    info = _info_of(ctx, cid)
    supported = ctx.repos.supports.supported_ids(ctx.citizen.id or 0, [cid])
    if not supported:
        ctx.services.supports.support(info, cid, ctx.citizen)
    lead = _("👍 You support #{id}; your draft was not published.").format(id=cid)
    if ctx.state != State.CONFIRMING or not draft or draft.get("edit"):
        return ctx.reply(RichText().p(_("👍 You support #{id}.").format(id=cid)))
    # The question answered by supporting counts as skipped (it has no contribution of theirs).
    skipped = list(ctx.data("skipped") or [])
    if draft["question_id"] not in skipped:
        skipped.append(draft["question_id"])
    ctx.set_state(State.IDLE, draft=None, skipped=skipped)
    index = participation._next_question(
        ctx, info, info.question_index(int(draft["question_id"])) + 1
    )
    if index is None or not info.allows(ctx.now).contribute:
        return participation._finished(ctx, info, lead)
    return participation._ask(ctx, info, index, lead)
