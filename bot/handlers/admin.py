"""Running a consultation from chat (administrators): send its YAML file to create or update it,
``/manage`` to open, close or extend it and to change its settings. Every change is shown first
and applied only after a confirmation (``/apply``, or ``/discard``), then written to the audit
log. Lifecycle moves go through the scheduler's ``Lifecycle`` so the schedule follows."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot import errors
from bot.actions import pack
from bot.broadcasts import BroadcastService
from bot.consultation_file import (
    ConsultationDocument,
    ConsultationFileError,
    parse_consultation_text,
)
from bot.domain import ConsultationInfo, Phase
from bot.handlers import views
from bot.handlers.moderation import actor, service
from bot.i18n import N_, fmt_datetime
from bot.i18n import gettext as _
from bot.messages import Button, FileReceived, OutboundMessage, RichText, b, code, i
from bot.params import Text, Word
from bot.router import Chats, Ctx, Reply, Role, Router
from bot.schedule import Lifecycle, parse_local
from storage.models import Consultation

router = Router("admin")

SETTINGS = {
    "premoderation": (
        "premoderation",
        N_("Pre-moderation (contributions published after review)"),
    ),
    "withdrawal": ("support_withdrawal", N_("Supports can be withdrawn")),
    "comments": ("comments", N_("Comments")),
}


# Button labels.
SHORT = {
    "premoderation": N_("Pre-moderation"),
    "withdrawal": N_("Support withdrawal"),
    "comments": N_("Comments"),
}


class CannotOpen(errors.DomainError):
    msgid = N_("Only a consultation that has not opened yet can be opened now (it is {phase}).")


def _on_off(value: bool) -> str:
    return _("on") if value else _("off")


def _bump(row: Consultation, before: Any) -> None:
    """A new revision: cached parsed documents are keyed on it."""
    row.revision += 1


def _ask(ctx: Ctx, op: dict[str, Any], text: RichText) -> OutboundMessage:
    token = secrets.token_hex(4)
    ctx.set_state(ctx.state, admin_op={**op, "token": token})
    text = text.p(
        i(
            _("Apply this change? Type {apply} or {discard}.").format(
                apply=f"/apply {token}", discard="/discard"
            )
        )
    )
    return ctx.reply(
        text,
        (
            (
                Button("✅ " + _("Apply"), pack("aok", token)),
                Button("✖ " + _("Discard"), pack("ano")),
            ),
        ),
    )


# --------------------------------------------------------------------------- YAML upload


def _preview(ctx: Ctx, doc: ConsultationDocument, existing: Consultation | None) -> RichText:
    zone = ZoneInfo(doc.timezone)
    rt = RichText().h(doc.title)
    if existing is None:
        rt = rt.p(b(_("New consultation “{slug}”.").format(slug=doc.slug)))
    else:
        rt = rt.p(
            b(
                _(
                    "Update of the consultation “{slug}”: its contributions, supports and "
                    "comments are kept."
                ).format(slug=doc.slug)
            )
        )
    rt = rt.p(
        _("From {opens} to {closes} ({zone}).").format(
            opens=fmt_datetime(doc.opens_at_utc, doc.timezone),
            closes=fmt_datetime(doc.closes_at_utc, doc.timezone),
            zone=zone.key,
        )
    )
    for n, q in enumerate(doc.questions, 1):
        rt = rt.li(f"{n}. ", q.text)
    s = doc.settings
    rt = rt.p(
        i(
            _(
                "Languages: {languages}. Pre-moderation {pre}, support withdrawal {wd}, "
                "comments {com}."
            ).format(
                languages=", ".join(doc.languages),
                pre=_on_off(s.premoderation),
                wd=_on_off(s.support_withdrawal),
                com=_on_off(s.comments),
            )
        )
    )
    return rt


@router.file(role=Role.ADMIN, chats=Chats.PRIVATE)
def upload(ctx: Ctx) -> Reply:
    payload = ctx.event.payload
    assert isinstance(payload, FileReceived)
    if ctx.role < Role.ADMIN or not ctx.private:
        return None  # not ours: the usual "I can only read text" answer
    source = (payload.filename or "consultation.yaml")[:80]
    try:
        doc = parse_consultation_text(payload.data, source)
    except ConsultationFileError as exc:
        rt = RichText().p(b(_("This consultation file has errors; nothing was changed:")))
        for error in exc.errors[:30]:
            rt = rt.li(f"{exc.source}: {error}")
        if len(exc.errors) > 30:
            rt = rt.p(i(_("…and {n} more.").format(n=len(exc.errors) - 30)))
        return ctx.reply(rt)
    existing = ctx.repos.consultations.by_slug(doc.slug)
    # Refused (translated) when it drops questions that have contributions or is another
    # consultation under an existing slug; an identical file has nothing to apply.
    outcome, _dropped = ctx.services.consultations.check_import(doc)
    if outcome == "unchanged":
        return ctx.reply(
            RichText().p(
                _("Consultation “{slug}” is unchanged: nothing to apply.").format(slug=doc.slug)
            )
        )
    return _ask(
        ctx,
        {"kind": "import", "document": doc.to_json(), "source": source},
        _preview(ctx, doc, existing),
    )


# --------------------------------------------------------------------------- /manage


def _panel(ctx: Ctx, info: ConsultationInfo) -> OutboundMessage:
    phase = info.phase(ctx.now)
    s = info.settings
    rt = RichText().h(info.content(ctx.locale).title)
    rt = rt.p(
        code(info.slug),
        " · ",
        b(views.status_line(info, ctx.now)),
        "\n",
        views.dates_line(info),
    )
    for key, (field, label) in SETTINGS.items():
        rt = rt.li(
            _(label),
            ": ",
            b(_on_off(getattr(s, field))),
            " — ",
            code(f"/manage {key} {'off' if getattr(s, field) else 'on'}"),
        )
    rt = rt.p(
        i(
            _("Also: {commands}").format(
                commands="/manage open · /manage close · /manage extend DATE [TIME]"
            )
        )
    )
    lifecycle: list[Button] = []
    if phase in (Phase.UPCOMING, Phase.DRAFT):
        lifecycle.append(Button("▶ " + _("Open now"), pack("mng", "open")))
    if phase == Phase.OPEN:
        lifecycle.append(Button("🏁 " + _("Close now"), pack("mng", "close")))
        lifecycle.append(Button("⏩ " + _("Extend by 7 days"), pack("mng", "extend", "7d")))
    toggles = tuple(
        Button(
            f"{_(SHORT[key])} → {_on_off(not getattr(s, field))}",
            pack("mng", key, "off" if getattr(s, field) else "on"),
        )
        for key, (field, _label) in SETTINGS.items()
    )
    rows = [tuple(lifecycle)] if lifecycle else []
    rows += [(t,) for t in toggles]
    return ctx.reply(rt, tuple(rows))


@router.action(
    "mng",
    command="manage",
    params=(
        Text(
            "change",
            N_("[open|close|extend DATE [TIME]|premoderation|withdrawal|comments on|off]"),
            optional=True,
        ),
    ),
    help=N_("Run the consultation: open, close, extend, settings (administrators)"),
    role=Role.ADMIN,
)
def manage(ctx: Ctx) -> Reply:
    info = ctx.consultation()
    if not ctx.args:
        return _panel(ctx, info)
    op = ctx.args[0].lower()
    title = info.content(ctx.locale).title
    base = {"consultation_id": info.id}
    phase = info.phase(ctx.now)
    if op == "open":
        if phase not in (Phase.UPCOMING, Phase.DRAFT):
            raise CannotOpen(phase=str(phase))
        return _ask(
            ctx,
            {**base, "kind": "open"},
            RichText().p(
                _("Open “{title}” now? Citizens can take part at once.").format(title=title)
            ),
        )
    if op == "close":
        if phase != Phase.OPEN:
            from bot.schedule import NotOpenNow

            raise NotOpenNow()
        return _ask(
            ctx,
            {**base, "kind": "close"},
            RichText().p(
                _(
                    "Close “{title}” now? Contributions, supports and comments stop at once and "
                    "the results are posted. This cannot be undone."
                ).format(title=title)
            ),
        )
    if op == "extend":
        if len(ctx.args) < 2:
            raise IndexError  # usage
        zone = ZoneInfo(info.timezone)
        value = ctx.args[1].lower()
        if value.endswith("d") and value[:-1].isdigit() and 0 < int(value[:-1]) <= 366:
            closes_at = info.closes_at + timedelta(days=int(value[:-1]))
        else:
            current = info.closes_at.astimezone(zone).time()
            closes_at = parse_local(
                ctx.args[1], ctx.args[2] if len(ctx.args) > 2 else None, zone, current
            )
        return _ask(
            ctx,
            {**base, "kind": "extend", "closes_at": closes_at.isoformat()},
            RichText().p(
                _(
                    "Move the closing of “{title}” from {old} to {new}? Subscribers are told."
                ).format(
                    title=title,
                    old=fmt_datetime(info.closes_at, info.timezone),
                    new=fmt_datetime(closes_at, info.timezone),
                )
            ),
        )
    if op in SETTINGS:
        if len(ctx.args) < 2 or ctx.args[1].lower() not in ("on", "off"):
            raise IndexError  # usage
        enable = ctx.args[1].lower() == "on"
        field, label = SETTINGS[op]
        text = _("Set “{setting}” to {value} for “{title}”?").format(
            setting=_(label), value=_on_off(enable), title=title
        )
        rt = RichText().p(text)
        if op == "premoderation" and not enable:
            rt = rt.p(
                i(_("Contributions already awaiting moderation stay in the queue (/queue)."))
            )
        return _ask(ctx, {**base, "kind": "setting", "field": field, "value": enable}, rt)
    raise IndexError  # usage


# --------------------------------------------------------------------------- apply / discard


@router.action(
    "aok",
    command="apply",
    params=(Word("code", N_("CODE"), optional=True),),
    help=N_("Apply the change you are previewing (administrators)"),
    role=Role.ADMIN,
)
def apply(ctx: Ctx) -> Reply:
    assert ctx.action is not None
    op = ctx.data("admin_op")
    token = ctx.action.arg(0)
    if not isinstance(op, dict) or (token is not None and token != op.get("token")):
        raise errors.StaleAction()
    ctx.set_state(ctx.state, admin_op=None)
    kind = op["kind"]
    mods = service(ctx)
    who = actor(ctx)
    lifecycle = Lifecycle(ctx.repos, ctx.now)
    if kind == "import":
        doc = ConsultationDocument.from_json(op["document"], op.get("source", "upload"))
        before = ctx.repos.consultations.by_slug(doc.slug)
        previous = before.updated_at if before is not None else None
        result = ctx.services.consultations.import_document(doc)
        row, created = result.row, result.created
        _bump(row, previous)
        ctx.repos.session.flush()
        info = ctx.services.consultations.info(row)
        lifecycle.sync(info)
        mods.record(
            who, info.id, "import", f"consultation:{info.slug}", details={"created": created}
        )
        text = (
            _("Consultation “{slug}” created. Open it with /start {slug}.")
            if created
            else _("Consultation “{slug}” updated.")
        ).format(slug=info.slug)
        return ctx.reply(RichText().p(text), edit=True)
    info = ctx.services.consultations.get(int(op["consultation_id"]))
    current = ctx.repos.consultations.get(info.id)
    assert current is not None
    row = current
    previous = row.updated_at
    if kind == "open":
        if info.phase(ctx.now) not in (Phase.UPCOMING, Phase.DRAFT):
            raise CannotOpen(phase=str(info.phase(ctx.now)))
        row.opens_at = min(row.opens_at, ctx.now)
        if row.status == "draft":
            row.status = "scheduled"
        row.updated_at = ctx.now
        _bump(row, previous)
        ctx.repos.session.add(row)
        ctx.repos.session.flush()
        new = ctx.services.consultations.info(row)
        lifecycle.sync(new)
        mods.record(who, info.id, "open", f"consultation:{info.slug}")
        text = _("“{slug}” is open.").format(slug=info.slug)
    elif kind == "close":
        new = lifecycle.close_now(info)
        mods.record(who, info.id, "close", f"consultation:{info.slug}")
        text = _("“{slug}” is closed as of {date}.").format(
            slug=info.slug, date=fmt_datetime(new.closes_at, new.timezone)
        )
    elif kind == "extend":
        from datetime import datetime

        closes_at = datetime.fromisoformat(op["closes_at"])
        new = lifecycle.extend(info, closes_at)
        BroadcastService(ctx.repos, ctx.now).extension(new, by=ctx.citizen.id)
        mods.record(
            who,
            info.id,
            "extend",
            f"consultation:{info.slug}",
            details={"closes_at": op["closes_at"]},
        )
        text = _("“{slug}” now closes on {date}.").format(
            slug=info.slug, date=fmt_datetime(new.closes_at, new.timezone)
        )
    elif kind == "setting":
        document = dict(row.document)
        settings = dict(document.get("settings") or {})
        settings[op["field"]] = bool(op["value"])
        document["settings"] = settings
        ConsultationDocument.from_json(document)  # still valid
        row.document = document
        row.updated_at = ctx.now
        _bump(row, previous)
        ctx.repos.session.add(row)
        mods.record(
            who,
            info.id,
            "settings",
            f"consultation:{info.slug}",
            details={op["field"]: bool(op["value"])},
        )
        text = _("Setting changed for “{slug}”.").format(slug=info.slug)
    else:
        raise errors.StaleAction()
    return ctx.reply(RichText().p(text), edit=True)


@router.action(
    "ano", command="discard", help=N_("Discard the change you are previewing"), role=Role.ADMIN
)
def discard(ctx: Ctx) -> Reply:
    ctx.set_state(ctx.state, admin_op=None)
    return ctx.reply(RichText().p(_("Discarded: nothing was changed.")), edit=True)
