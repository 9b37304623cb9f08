"""Similar ideas shown in a contribution's preview (issue 15): before publishing, the citizen
sees up to three published ideas of the same question that say nearly the same thing, and may
support one of them instead (``/instead N``, bot.handlers.legible) or publish theirs anyway.
The lookup is lexical (storage.repositories_legible.similar)."""

from __future__ import annotations

from bot.actions import pack
from bot.domain import ConsultationInfo
from bot.i18n import gettext as _
from bot.messages import Button, RichText, b
from bot.router import Ctx

SHOWN = 3
EXCERPT = 160


def similar_ideas(ctx: Ctx, info: ConsultationInfo, draft: dict) -> list[tuple[int, str]]:
    """(id, text) of the published ideas most similar to the draft, best first."""
    assert ctx.citizen.id is not None
    ids = ctx.repos.legible.similar(
        info.id,
        int(draft["question_id"]),
        str(draft["text"]),
        exclude_citizen=ctx.citizen.id,
        limit=SHOWN,
    )
    out = []
    for cid in ids:
        row = ctx.repos.contributions.get(cid)
        if row is not None:
            out.append((cid, row.text))
    return out


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"


def preview_section(
    ctx: Ctx, info: ConsultationInfo, draft: dict, rt: RichText
) -> tuple[RichText, list[tuple[Button, ...]]]:
    """The preview's text with the similar ideas added, and one "support #N instead" button
    per idea. Nothing is added when no idea is similar enough."""
    if draft.get("edit") or "question_id" not in draft:
        return rt, []  # a new version of one's own idea: nothing to support instead
    found = similar_ideas(ctx, info, draft)
    if not found:
        return rt, []
    rt = rt.p(b(_("Similar ideas already published:")))
    for cid, text in found:
        rt = rt.li(b(f"#{cid} "), excerpt(text))
    rt = rt.p(_("Support one of them instead, or publish yours anyway."))
    rows: list[tuple[Button, ...]] = [
        (Button("👍 " + _("Support #{id} instead").format(id=cid), pack("sins", cid)),)
        for cid, _t in found
    ]
    return rt, rows
