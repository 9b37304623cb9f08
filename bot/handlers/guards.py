"""The moderation and privacy middlewares, in the dispatcher's chain (in this order):

1. ``roles``: raises ``ctx.role`` to MODERATOR when the sender's immutable platform id
   moderates the consultation of the event; keeps the bans of people who erased their data and
   came back; after the handler, sends new contributions awaiting pre-moderation to the
   moderators.
2. ``flood``: per-citizen quotas (actions per minute, contributions per hour), one warning.
3. ``privacy``: taking part (contributing, supporting, commenting, reporting) needs the
   privacy notice accepted; reading does not. Also sweeps what erasures left behind.

"Taking part" is decided by ``participation_verb``: the action verbs of the core's
participation and ideas routers and of the report button, whether pressed, typed as their
command, chosen as a numbered option, or implied by the dialogue state (the text answering a
question, a comment) or by a reply or a support reaction. A new participation verb must be
added to ``PARTICIPATION_VERBS``.
"""

from __future__ import annotations

from collections.abc import Callable

from bot import errors
from bot.actions import Action, ActionCodecError, pack, parse
from bot.flood import FloodService
from bot.handlers import moderation as mod_handlers
from bot.handlers import privacy as privacy_handlers
from bot.handlers.ideas import SUPPORT_REACTIONS
from bot.i18n import gettext as _
from bot.messages import (
    ActionPressed,
    CommandMessage,
    OutboundMessage,
    ReactionAdded,
    RichText,
    TextMessage,
    Unsupported,
)
from bot.moderation import ModerationService, Target, ensure_not_banned
from bot.privacy import PrivacyService
from bot.router import Ctx, Role, State
from storage.models_moderation import Ban

Next = Callable[[Ctx], list[OutboundMessage]]

PARTICIPATION_VERBS = frozenset(
    {"part", "ok", "redo", "skip", "sup", "uns", "com", "medit", "mdel", "mdelok", "rep"}
)
_STATE_VERBS = {State.ANSWERING: "part", State.COMMENTING: "com", State.EDITING: "medit"}
# Moderation verbs whose first argument names the content acted upon.
TARGET_VERBS = frozenset({"mok", "mhide", "mrest", "mban"})


def event_action(ctx: Ctx) -> Action | None:
    """The action this event runs: a pressed button, a typed command with an action verb, or
    (channels without buttons) the number of an option."""
    payload = ctx.event.payload
    if isinstance(payload, ActionPressed):
        try:
            return parse(payload.action)
        except ActionCodecError:
            return None
    if isinstance(payload, CommandMessage):
        spec = ctx.dispatcher.commands.get(payload.name)
        if spec is not None and spec.verb is not None:
            return Action(spec.verb, tuple(payload.args))
        return None
    if (
        isinstance(payload, TextMessage)
        and not ctx.caps.buttons
        and payload.text.strip().isdigit()
    ):
        options = ctx.data("options") or {}
        data = options.get(payload.text.strip())
        if data:
            try:
                return parse(data)
            except ActionCodecError:
                return None
    return None


def participation_verb(ctx: Ctx) -> str | None:
    """The participation verb of this event, or None if it only reads (or administers)."""
    action = event_action(ctx)
    if action is not None:
        return action.verb if action.verb in PARTICIPATION_VERBS else None
    payload = ctx.event.payload
    if isinstance(payload, TextMessage):
        if payload.reply_to is not None:
            return "com"
        return _STATE_VERBS.get(ctx.state)
    if isinstance(payload, ReactionAdded):
        return "sup" if payload.key.strip() in SUPPORT_REACTIONS else None
    return None


def _private_only_elsewhere(ctx: Ctx, verb: str) -> bool:
    """A private-only action asked in a group: the router answers "continue in private", which
    is the useful answer there (the notice comes in the private chat)."""
    if ctx.private:
        return False
    entry = ctx.dispatcher.actions.get(verb)
    command = ctx.dispatcher.commands.get(entry[1]) if entry and entry[1] else None
    return command is not None and command.private_only


def _resume(ctx: Ctx) -> str | None:
    """An action id that redoes this event after the notice is accepted (if it has one)."""
    action = event_action(ctx)
    if action is None:
        return None
    try:
        return pack(action.verb, *action.args)
    except ActionCodecError:
        return None  # e.g. a typed comment: the citizen sends it again


# --------------------------------------------------------------------------- roles


def _event_consultations(ctx: Ctx, svc: ModerationService) -> set[int]:
    """The consultation an event is about: the content a moderation verb acts upon, else the
    consultation of the dialogue (as ``ctx.consultation()`` sees it)."""
    action = event_action(ctx)
    if action is not None and action.args:
        try:
            if action.verb in TARGET_VERBS:
                return {svc.content(Target.parse(action.args[0])).consultation_id}
            if action.verb == "munban" and isinstance(ctx.event.payload, ActionPressed):
                ban = ctx.repos.session.get(Ban, int(action.args[0]))
                if ban is not None:
                    return {ban.consultation_id}
        except (errors.DomainError, ValueError):
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


# Commands whose answer depends on the sender's role without requiring one.
ROLE_AWARE = frozenset({"help", "whoami"})


def _needs_role(ctx: Ctx) -> bool:
    """Whether this event's handling depends on being a moderator: a command or button that
    requires it, or one that shows what the sender may do. Other events (texts, supports,
    comments...) skip the moderator lookup."""
    payload = ctx.event.payload
    if isinstance(payload, CommandMessage):
        spec = ctx.dispatcher.commands.get(payload.name)
        return spec is not None and (spec.role >= Role.MODERATOR or spec.name in ROLE_AWARE)
    action = event_action(ctx)
    if action is None:
        return False
    entry = ctx.dispatcher.actions.get(action.verb)
    return entry is not None and (entry[2] >= Role.MODERATOR or action.verb in ROLE_AWARE)


def roles(ctx: Ctx, nxt: Next) -> list[OutboundMessage]:
    svc = ModerationService(ctx.repos, ctx.now, ctx.dispatcher.settings)
    ev = ctx.event.context
    if ctx.new_citizen:
        svc.carry_bans(ctx.citizen)
    if ctx.role < Role.MODERATOR and _needs_role(ctx):
        moderated = svc.moderated(ev.platform, ev.user_id)
        if moderated and moderated & _event_consultations(ctx, svc):
            ctx.role = Role.MODERATOR
    verb = participation_verb(ctx)
    if verb == "part":
        # Starting to answer: a suspended citizen learns it now rather than after writing.
        try:
            ensure_not_banned(ctx.repos, ctx.consultation().id, ctx.citizen)
        except errors.DomainError as exc:
            return [ctx.reply(RichText().p(exc.translated()))]
    confirming = verb == "ok"
    out = nxt(ctx)
    if confirming:
        out = out + mod_handlers.notify_pending(ctx)
    return out


# --------------------------------------------------------------------------- flood


def flood(ctx: Ctx, nxt: Next) -> list[OutboundMessage]:
    if ctx.role >= Role.MODERATOR:
        return nxt(ctx)
    svc = FloodService(ctx.repos, ctx.now, ctx.dispatcher.settings)
    payload = ctx.event.payload
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
    if participation_verb(ctx) == "ok" and ctx.state == State.CONFIRMING:
        verdict = svc.check_contribution(ctx.citizen)
        if not verdict.allowed:
            if not verdict.warn:
                return []
            return [
                ctx.reply(
                    RichText().p(
                        _(
                            "Thank you for your many contributions! You have reached {n} in an "
                            "hour: please wait a little before sending more. Your draft is kept "
                            "(/participate)."
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
    verb = participation_verb(ctx)
    if verb is None or ctx.citizen.id in known.consented or _private_only_elsewhere(ctx, verb):
        return nxt(ctx)
    if svc.has_accepted(ctx.citizen):
        if len(known.consented) > 100_000:
            known.consented.clear()
        assert ctx.citizen.id is not None
        known.consented.add(ctx.citizen.id)
        return nxt(ctx)
    return [privacy_handlers.gate_reply(ctx, _resume(ctx))]


MIDDLEWARES = (roles, flood, privacy)
