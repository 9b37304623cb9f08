"""The moderation and privacy middlewares, in the dispatcher's chain (see bot.router):

1. ``roles`` (before the gates): raises ``ctx.role`` to MODERATOR when the sender's immutable
   platform id moderates the consultation of the event; keeps the bans of people who erased
   their data and came back; after the handler, sends new contributions awaiting
   pre-moderation to the moderators.
2. ``flood`` (before the gates): per-citizen quotas (events per minute; per hour for routes
   that declare a ``quota``), one warning.
3. ``privacy`` (after the gates): a route that declares ``consent`` needs the privacy notice
   accepted; reading does not. Also sweeps what erasures left behind.

What an event does is its resolved route (``ctx.route``), whatever the entry path: a pressed
button, a typed command, a numbered option, a reply to a card, a reaction or the text of a
dialogue. The gates are declared on the route, never kept in lists here.
"""

from __future__ import annotations

from collections.abc import Callable

from bot import errors
from bot.actions import ActionCodecError, pack
from bot.flood import FloodService
from bot.handlers import moderation as mod_handlers
from bot.handlers import privacy as privacy_handlers
from bot.i18n import gettext as _
from bot.messages import (
    ActionPressed,
    CommandMessage,
    OutboundMessage,
    RichText,
    Unsupported,
)
from bot.moderation import ModerationService, Target, ensure_not_banned
from bot.privacy import PrivacyService
from bot.router import Ctx, Role, private_only_reply
from storage.models_moderation import Ban

Next = Callable[[Ctx], list[OutboundMessage]]

# Moderation verbs whose first argument names the content acted upon.
TARGET_VERBS = frozenset({"mok", "mhide", "mrest", "mban"})


def _resume(ctx: Ctx) -> str | None:
    """An action id that redoes this event after the notice is accepted (if it has one)."""
    resolved, route = ctx.resolved, ctx.route
    if resolved is None or route is None or route.verb is None or resolved.values is not None:
        return None
    if isinstance(ctx.event.payload, CommandMessage) and any(
        p.kind.value == "text" for p in route.params
    ):
        return None  # e.g. a typed comment: the citizen sends it again
    try:
        return pack(route.verb, *resolved.tokens)
    except ActionCodecError:
        return None


# --------------------------------------------------------------------------- roles


def _event_consultations(ctx: Ctx, svc: ModerationService) -> set[int]:
    """The consultation an event is about: the content a moderation verb acts upon, else the
    consultation of the dialogue (as ``ctx.consultation()`` sees it)."""
    route, resolved = ctx.route, ctx.resolved
    if route is not None and resolved is not None and resolved.tokens:
        first = resolved.tokens[0]
        try:
            if route.verb in TARGET_VERBS:
                return {svc.content(Target.parse(first)).consultation_id}
            if route.verb == "munban" and isinstance(ctx.event.payload, ActionPressed):
                ban = ctx.repos.session.get(Ban, int(first))
                if ban is not None:
                    return {ban.consultation_id}
        except (errors.DomainError, ValueError, OverflowError):
            pass
    cid = ctx.data("consultation")
    if isinstance(cid, int):
        return {cid}
    ev = ctx.event.context
    chat = svc.chat_consultations(ev.platform, ev.chat_id)
    if chat:
        # In a moderators' chat, the dialogue starts on the chat's consultation.
        ctx.set_state(ctx.state, consultation=chat[0])
        return {chat[0]}
    try:
        return {ctx.services.consultations.default().id}
    except errors.DomainError:
        return set()


def roles(ctx: Ctx, nxt: Next) -> list[OutboundMessage]:
    svc = ModerationService(ctx.repos, ctx.now, ctx.dispatcher.settings)
    ev = ctx.event.context
    route = ctx.route
    assert route is not None
    if ctx.new_citizen:
        svc.carry_bans(ctx.citizen)
    if ctx.role < Role.MODERATOR and (route.role >= Role.MODERATOR or route.role_aware):
        moderated = svc.moderated(ev.platform, ev.user_id)
        if moderated and moderated & _event_consultations(ctx, svc):
            ctx.role = Role.MODERATOR
    if route.verb == "part":
        # Starting to answer: a suspended citizen learns it now rather than after writing.
        try:
            ensure_not_banned(ctx.repos, ctx.consultation().id, ctx.citizen)
        except errors.DomainError as exc:
            return [ctx.reply(RichText().p(exc.translated()))]
    out = nxt(ctx)
    if route.verb == "ok":
        out = out + mod_handlers.notify_pending(ctx)
    return out


# --------------------------------------------------------------------------- flood


def flood(ctx: Ctx, nxt: Next) -> list[OutboundMessage]:
    if ctx.role >= Role.MODERATOR:
        return nxt(ctx)
    svc = FloodService(ctx.repos, ctx.now, ctx.dispatcher.settings)
    payload = ctx.event.payload
    route = ctx.route
    assert route is not None
    # In groups only what is addressed to the bot counts; an undecryptable message is counted
    # when its keys arrive and it is delivered again, readable.
    counted = ctx.private or isinstance(payload, CommandMessage | ActionPressed)
    if isinstance(payload, Unsupported) and payload.what == "undecryptable":
        counted = False
    if counted:
        verdict = svc.count_action(ctx.citizen)
        if not verdict.allowed:
            if not verdict.warn:
                return []
            return [
                ctx.reply(
                    RichText().p(
                        _(
                            "You are going a little fast: I will ignore your messages for a "
                            "minute. Thank you for your patience!"
                        )
                    )
                )
            ]
    if route.quota is not None:
        verdict = svc.check_quota(ctx.citizen, route.quota)
        if not verdict.allowed:
            # Always answered: a throttled citizen is never left without a reply.
            return [
                ctx.reply(
                    RichText().p(
                        _(
                            "Thank you for your many comments! You have written {n} in an "
                            "hour: please wait a little before sending more."
                        ).format(n=verdict.limit)
                    )
                )
            ]
    return nxt(ctx)


# --------------------------------------------------------------------------- privacy


def privacy(ctx: Ctx, nxt: Next) -> list[OutboundMessage]:
    svc = PrivacyService(ctx.repos, ctx.now, ctx.dispatcher.settings)
    known = privacy_handlers.hints(ctx)
    if known.residue:
        known.residue = svc.sweep(keep_dialogue_id=ctx.dialogue.id) > 0
    route = ctx.route
    assert route is not None
    if not route.consent or ctx.citizen.id in known.consented:
        return nxt(ctx)
    if svc.has_accepted(ctx.citizen):
        if len(known.consented) > 100_000:
            known.consented.clear()
        assert ctx.citizen.id is not None
        known.consented.add(ctx.citizen.id)
        return nxt(ctx)
    if not ctx.private:
        # The notice is personal: it is shown and accepted in a private chat, never in a group.
        return [private_only_reply(ctx)]
    return [privacy_handlers.gate_reply(ctx, _resume(ctx))]


# Before the route's gates, and after them.
MIDDLEWARES = (roles, flood)
GATED = (privacy,)
