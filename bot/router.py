"""Routers per feature, composed by one dispatcher with a short middleware chain.

A handler receives a ``Ctx`` and returns outbound messages as values. Commands declare their
name, arguments, help text and required role; ``/help`` is generated from that metadata. An
action verb (a button) may declare the typed command that does the same thing, so every button
has a typed equivalent and channels without buttons show it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from bot import errors
from bot.actions import Action, ActionCodecError, parse
from bot.domain import ConsultationInfo
from bot.i18n import N_, gettext, negotiate, set_locale
from bot.messages import (
    ActionPressed,
    Attachment,
    ChatType,
    CommandMessage,
    FileReceived,
    InboundEvent,
    Keyboard,
    MessageRef,
    OutboundMessage,
    ReactionAdded,
    RichText,
    Span,
    TextMessage,
    Unsupported,
)
from bot.services import ConsultationCache, Services
from bot.settings import Settings
from storage.models import Citizen, Dialogue
from storage.repositories import Repos

log = logging.getLogger(__name__)


class Role(IntEnum):
    CITIZEN = 0
    MODERATOR = 1
    ADMIN = 2


class State(StrEnum):
    IDLE = "idle"
    ANSWERING = "answering"  # data: q (question index)
    CONFIRMING = "confirming"  # data: draft {question_id, text}
    COMMENTING = "commenting"  # data: target (contribution id)
    EDITING = "editing"  # data: target (contribution id)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can show; the core degrades instead of testing platform names."""

    buttons: bool = True
    edits: bool = True
    max_length: int = 4096
    # A link that opens a private chat with the bot, ``{payload}`` replaced (Telegram deep link).
    deep_link: str | None = None


@dataclass
class Ctx:
    """Everything a handler may use for one event, inside one unit of work."""

    event: InboundEvent
    citizen: Citizen
    dialogue: Dialogue
    repos: Repos
    services: Services
    now: datetime
    locale: str
    role: Role
    caps: Capabilities
    dispatcher: Dispatcher
    new_citizen: bool = False
    action: Action | None = None
    args: tuple[str, ...] = ()
    rest: str = ""

    # ----- helpers

    @property
    def state(self) -> State:
        try:
            return State(self.dialogue.state)
        except ValueError:
            return State.IDLE

    def set_state(self, state: State, **data: Any) -> None:
        self.dialogue.state = str(state)
        merged = dict(self.dialogue.data or {})
        merged.update(data)
        self.dialogue.data = merged

    def data(self, key: str, default: Any = None) -> Any:
        return (self.dialogue.data or {}).get(key, default)

    def consultation(self) -> ConsultationInfo:
        cid = self.data("consultation")
        if cid is not None:
            try:
                return self.services.consultations.get(int(cid))
            except errors.NoConsultation:
                pass
        info = self.services.consultations.default()
        self.set_state(self.state, consultation=info.id)
        # The first time a citizen reaches a consultation counts as a visit.
        self.services.consultations.record_visit(info, self.citizen, None)
        return info

    @property
    def text(self) -> str:
        """The text of a text message ("" for other events)."""
        payload = self.event.payload
        return payload.text if isinstance(payload, TextMessage) else ""

    def caps_deep_link(self, payload: str) -> str | None:
        template = self.caps.deep_link
        return template.replace("{payload}", payload) if template else None

    @property
    def private(self) -> bool:
        return self.event.context.chat_type == ChatType.PRIVATE

    def reply(
        self,
        text: RichText,
        keyboard: Keyboard = (),
        *,
        edit: bool = False,
        notice: str | None = None,
        subject: tuple[str, int] | None = None,
        attachment: Attachment | None = None,
        reply_to: MessageRef | None = None,
    ) -> OutboundMessage:
        ctx = self.event.context
        return OutboundMessage(
            chat_id=ctx.chat_id,
            text=text,
            keyboard=keyboard,
            edit=ctx.message if edit and isinstance(self.event.payload, ActionPressed) else None,
            notice=notice,
            subject=subject,
            attachment=attachment,
            reply_to=reply_to,
            answers=(
                self.event.payload.query_id
                if isinstance(self.event.payload, ActionPressed)
                else None
            ),
        )


Reply = OutboundMessage | list[OutboundMessage] | None
Handler = Callable[[Ctx], Reply]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    help: str
    args: str = ""
    role: Role = Role.CITIZEN
    # For action-backed commands: the action verb whose args are the command's args.
    verb: str | None = None
    hidden: bool = False
    private_only: bool = False


@dataclass
class Router:
    name: str
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    actions: dict[str, tuple[Handler, str | None, Role]] = field(default_factory=dict)
    states: dict[State, Handler] = field(default_factory=dict)
    reactions: list[Handler] = field(default_factory=list)
    files: list[Handler] = field(default_factory=list)
    # Text handlers tried before the dialogue state's (e.g. a reply to an idea's message).
    intercepts: list[Handler] = field(default_factory=list)

    def command(
        self,
        name: str,
        *,
        help: str,
        args: str = "",
        role: Role = Role.CITIZEN,
        hidden: bool = False,
        private_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.commands[name] = CommandSpec(
                name, fn, help, args, role, hidden=hidden, private_only=private_only
            )
            return fn

        return deco

    def action(
        self,
        verb: str,
        *,
        command: str | None = None,
        help: str = "",
        args: str = "",
        role: Role = Role.CITIZEN,
        hidden: bool = False,
        private_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        """A button verb; with ``command``, ``/command ARGS`` runs the same handler."""

        def deco(fn: Handler) -> Handler:
            self.actions[verb] = (fn, command, role)
            if command:
                self.commands[command] = CommandSpec(
                    command,
                    fn,
                    help,
                    args,
                    role,
                    verb=verb,
                    hidden=hidden,
                    private_only=private_only,
                )
            return fn

        return deco

    def state(self, state: State) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.states[state] = fn
            return fn

        return deco

    def reaction(self, fn: Handler) -> Handler:
        self.reactions.append(fn)
        return fn

    def file(self, fn: Handler) -> Handler:
        self.files.append(fn)
        return fn

    def intercept(self, fn: Handler) -> Handler:
        self.intercepts.append(fn)
        return fn


Middleware = Callable[[Ctx, Callable[[Ctx], list[OutboundMessage]]], list[OutboundMessage]]


class Dispatcher:
    """Composes routers; turns one inbound event into outbound messages inside a unit of work."""

    def __init__(
        self,
        routers: Iterable[Router],
        *,
        admins: Iterable[str] = (),
        fallback_text: Handler | None = None,
        middlewares: Iterable[Middleware] = (),
        settings: Settings | None = None,
    ) -> None:
        self.routers = list(routers)
        self.commands: dict[str, CommandSpec] = {}
        self.actions: dict[str, tuple[Handler, str | None, Role]] = {}
        self.states: dict[State, Handler] = {}
        self.reactions: list[Handler] = []
        self.files: list[Handler] = []
        self.intercepts: list[Handler] = []
        for r in self.routers:
            for name in r.commands:
                if name in self.commands:
                    raise ValueError(f"command /{name} registered twice")
            self.commands.update(r.commands)
            self.actions.update(r.actions)
            self.states.update(r.states)
            self.reactions.extend(r.reactions)
            self.files.extend(r.files)
            self.intercepts.extend(r.intercepts)
        self.admins = frozenset(admins)
        self.consultation_cache = ConsultationCache()
        self.fallback_text = fallback_text
        self.middlewares = [*middlewares, _domain_errors]
        # For features that need configuration in their handlers (moderation, privacy).
        self.settings = settings if settings is not None else Settings()

    # ----- metadata for help and menus

    def visible_commands(self, role: Role) -> list[CommandSpec]:
        return [c for c in self.commands.values() if c.role <= role and not c.hidden]

    def typed_command(self, action: str) -> str | None:
        """``sup:12`` → ``/support 12``: the typed equivalent of a button."""
        try:
            parsed = parse(action)
        except ActionCodecError:
            return None
        entry = self.actions.get(parsed.verb)
        if entry is None or entry[1] is None:
            return None
        return " ".join(["/" + entry[1], *parsed.args])

    def role_of(self, platform: str, user_id: str) -> Role:
        # Immutable platform ids only: never display names or usernames.
        return Role.ADMIN if f"{platform}:{user_id}" in self.admins else Role.CITIZEN

    # ----- dispatch

    def dispatch(
        self,
        event: InboundEvent,
        repos: Repos,
        now: datetime,
        caps: Capabilities,
    ) -> list[OutboundMessage]:
        ctx_ev = event.context
        citizen, new = repos.citizens.resolve(
            ctx_ev.platform, ctx_ev.user_id, ctx_ev.display_name, now
        )
        dialogue = repos.dialogues.load(ctx_ev.platform, ctx_ev.chat_id, ctx_ev.user_id, now)
        locale = citizen.locale or negotiate(ctx_ev.language)
        set_locale(locale)
        ctx = Ctx(
            event=event,
            citizen=citizen,
            dialogue=dialogue,
            repos=repos,
            services=Services(repos, now, self.consultation_cache),
            now=now,
            locale=locale,
            role=self.role_of(ctx_ev.platform, ctx_ev.user_id),
            caps=caps,
            dispatcher=self,
            new_citizen=new,
        )
        replies = self._chain(0)(ctx)
        if not caps.buttons:
            replies = self._number_options(ctx, replies)
        repos.dialogues.save(ctx.dialogue, now)
        return replies

    def _number_options(self, ctx: Ctx, replies: list[OutboundMessage]) -> list[OutboundMessage]:
        """Graceful degradation for channels without buttons: keyboards become numbered options
        (with their typed command); the mapping is kept in the dialogue so "2" presses option 2."""
        options: dict[str, str] = {}
        out: list[OutboundMessage] = []
        for message in replies:
            text = message.text
            for row in message.keyboard:
                for button in row:
                    if button.url:
                        text = text.opt("🔗 ", Span(button.label, link=button.url))
                        continue
                    if not button.action:
                        continue
                    number = str(len(options) + 1)
                    options[number] = button.action
                    typed = self.typed_command(button.action)
                    text = text.opt(
                        Span(f"[{number}]", bold=True),
                        f" {button.label}",
                        *((" — ", Span(typed, code=True)) if typed else ()),
                    )
            out.append(replace(message, text=text, keyboard=()))
        if options:
            ctx.set_state(ctx.state, options=options)
        return out

    def _chain(self, index: int) -> Callable[[Ctx], list[OutboundMessage]]:
        if index >= len(self.middlewares):
            return self._route
        middleware = self.middlewares[index]
        nxt = self._chain(index + 1)
        return lambda ctx: middleware(ctx, nxt)

    def _route(self, ctx: Ctx) -> list[OutboundMessage]:
        payload = ctx.event.payload
        if isinstance(payload, TextMessage):
            pressed = self._numbered_option(ctx, payload.text)
            if pressed is not None:
                return self._run_action(ctx, pressed)
            return self._first(
                [*self.intercepts, self.states.get(ctx.state), self.fallback_text], ctx
            )
        if isinstance(payload, CommandMessage):
            return self._run_command(ctx, payload)
        if isinstance(payload, ActionPressed):
            return self._run_action(ctx, payload.action)
        if isinstance(payload, ReactionAdded):
            return self._first(self.reactions, ctx)
        if isinstance(payload, FileReceived):
            return self._first(self.files, ctx) or [ctx.reply(RichText().p(gettext(_UNSUPPORTED)))]
        if isinstance(payload, Unsupported):
            message = _UNSUPPORTED_KINDS.get(payload.what, _UNSUPPORTED)
            return [ctx.reply(RichText().p(gettext(message)))]
        return []

    @staticmethod
    def _first(handlers: Iterable[Handler | None], ctx: Ctx) -> list[OutboundMessage]:
        """The replies of the first handler that answers (returns something)."""
        for handler in handlers:
            if handler is not None:
                out = _as_list(handler(ctx))
                if out:
                    return out
        return []

    def _numbered_option(self, ctx: Ctx, text: str) -> str | None:
        """On channels without buttons, a reply "2" presses option 2 of the last keyboard."""
        if ctx.caps.buttons:
            return None
        options = ctx.data("options") or {}
        return options.get(text.strip()) if text.strip().isdigit() else None

    def _run_command(self, ctx: Ctx, cmd: CommandMessage) -> list[OutboundMessage]:
        spec = self.commands.get(cmd.name)
        if spec is None or spec.role > ctx.role:
            if spec is not None and spec.role >= Role.MODERATOR:
                raise errors.NotAModerator()
            return [
                ctx.reply(
                    RichText().p(
                        gettext(
                            "I don't know the command /{name}. Type /help to see what you can do."
                        ).format(name=cmd.name[:32])
                    )
                )
            ]
        if spec.private_only and not ctx.private:
            return [ctx.reply(RichText().p(gettext(_PRIVATE_ONLY)))]
        ctx.args, ctx.rest = cmd.args, cmd.rest
        if spec.verb is not None:
            # Handlers read typed arguments through Action.arg_int & co, which refuse bad input.
            ctx.action = Action(spec.verb, tuple(cmd.args))
        try:
            return _as_list(spec.handler(ctx))
        except (ActionCodecError, IndexError):
            return [ctx.reply(RichText().p(_usage(spec)))]

    def _run_action(self, ctx: Ctx, data: str) -> list[OutboundMessage]:
        try:
            action = parse(data)
            handler, _cmd, role = self.actions[action.verb]
        except (ActionCodecError, KeyError):
            raise errors.StaleAction() from None
        if role > ctx.role:
            raise errors.NotAModerator()
        ctx.action = action
        ctx.args = action.args
        try:
            return _as_list(handler(ctx))
        except (ActionCodecError, IndexError):
            raise errors.StaleAction() from None


_UNSUPPORTED = N_("I can only read text messages and commands. Type /help to see what you can do.")
# Unsupported events that deserve a more precise answer than _UNSUPPORTED.
_UNSUPPORTED_KINDS = {
    "undecryptable": N_(
        "I could not read one of your messages: it was encrypted with keys my device did not "
        "receive. Please send it again."
    ),
    "edit": N_(
        "I do not take edited messages into account. Please send the corrected text as a new "
        "message."
    ),
}
_PRIVATE_ONLY = N_("Let's continue in a private chat: open a conversation with me to take part.")


def _usage(spec: CommandSpec) -> str:
    usage = f"/{spec.name} {gettext(spec.args) if spec.args else ''}".strip()
    return gettext("Usage: {usage} — {help}").format(usage=usage, help=gettext(spec.help))


def _as_list(reply: Reply) -> list[OutboundMessage]:
    if reply is None:
        return []
    if isinstance(reply, OutboundMessage):
        return [reply]
    return list(reply)


def _domain_errors(ctx: Ctx, nxt: Callable[[Ctx], list[OutboundMessage]]) -> list[OutboundMessage]:
    """A domain error becomes a translated reply. The engine rolls back the handler's changes
    (it runs the handler inside a savepoint) so bad input changes nothing."""
    savepoint = ctx.repos.session.begin_nested()
    try:
        out = nxt(ctx)
    except errors.DomainError as exc:
        savepoint.rollback()
        # The dialogue row was rolled back with the savepoint; reload it.
        ctx.repos.session.refresh(ctx.dialogue)
        log.info("domain error %s for %s", type(exc).__name__, ctx.event.context.platform)
        return [ctx.reply(RichText().p(exc.translated()))]
    savepoint.commit()
    return out
