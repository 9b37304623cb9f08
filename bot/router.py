"""Routers per feature, composed by one dispatcher with a short middleware chain.

A handler receives a ``Ctx`` and returns outbound messages as values. Commands declare their
name, arguments, help text and required role; ``/help`` is generated from that metadata. An
action verb (a button) may declare the typed command that does the same thing, so every button
has a typed equivalent and channels without buttons show it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Flag, IntEnum, StrEnum, auto
from typing import Any

from bot import errors
from bot.actions import Action, ActionCodecError, parse
from bot.domain import ConsultationInfo
from bot.i18n import N_, gettext, negotiate, set_locale
from bot.messages import (
    ActionPressed,
    Attachment,
    Button,
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
from bot.params import BadArguments, Param, usage
from bot.params import parse as parse_params
from bot.services import ConsultationCache, Services, require
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
    # The route this event resolved to, and its typed parameters (see bot.params).
    route: Route | None = None
    resolved: Resolved | None = None
    params: dict[str, Any] = field(default_factory=dict)

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
# A text or reaction matcher: the route's parameters if the event is for it, else None.
Matcher = Callable[[Ctx], dict[str, Any] | None]


class Chats(Flag):
    """Where a route may run."""

    PRIVATE = auto()
    GROUP = auto()
    ANY = PRIVATE | GROUP


@dataclass(frozen=True)
class Route:
    """One thing a person can do, declared once with its gates. Every entry path (typed
    command, button, numbered option, reply to a card, reaction, text inside a dialogue)
    resolves to a route; the dispatcher applies the gates before the handler runs:

    - ``role``: the least role that may run it;
    - ``params``: typed parameters (bot.params), parsed the same way for every path;
    - ``chats``: private chats, groups or both (personal data and dialogues: private only);
    - ``phase``: what the consultation's phase must allow (``contribute``, ``support``,
      ``comment``), checked before the privacy consent so a closed consultation says so first;
    - ``consent``: taking part needs the privacy notice accepted (reading does not);
    - ``quota``: counted against a per-hour quota of published texts (flood), by name.
    """

    name: str
    handler: Handler
    help: str = ""
    params: tuple[Param, ...] = ()
    role: Role = Role.CITIZEN
    chats: Chats = Chats.ANY
    phase: str | None = None
    consent: bool = False
    quota: str | None = None
    command: str | None = None
    verb: str | None = None
    hidden: bool = False
    # The answer depends on the sender's role without requiring one (/help, /whoami).
    role_aware: bool = False

    @property
    def private_only(self) -> bool:
        return self.chats == Chats.PRIVATE

    @property
    def args(self) -> str:
        """The parameters as shown in the usage line (translated)."""
        return usage(self.params)

    def usage(self) -> str:
        line = f"/{self.command} {self.args}".strip()
        return gettext("Usage: {usage} — {help}").format(usage=line, help=gettext(self.help))


# Kept for the adapters that build menus from the commands' metadata.
CommandSpec = Route


@dataclass(frozen=True, slots=True)
class Resolved:
    route: Route
    # Arguments to parse against the route's parameters (typed or pressed), or parameters
    # already typed by a matcher (replies, reactions).
    tokens: tuple[str, ...] = ()
    rest: str | None = None
    values: dict[str, Any] | None = None
    pressed: bool = False  # a button or a numbered option: bad arguments mean an old button


@dataclass
class Router:
    name: str
    routes: list[Route] = field(default_factory=list)
    states: dict[State, Route] = field(default_factory=dict)
    # Text routes tried before the dialogue state's (e.g. a reply to an idea's message).
    texts: list[tuple[Matcher, Route]] = field(default_factory=list)
    reactions: list[tuple[Matcher, Route]] = field(default_factory=list)
    files: list[Route] = field(default_factory=list)

    def _route(self, fn: Handler, name: str | None, **gates: Any) -> Route:
        route = Route(name or fn.__name__, fn, **gates)
        self.routes.append(route)
        return route

    def command(
        self, name: str, *, help: str, params: Iterable[Param] = (), **gates: Any
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self._route(fn, name, help=help, params=tuple(params), command=name, **gates)
            return fn

        return deco

    def action(
        self,
        verb: str,
        *,
        command: str | None = None,
        help: str = "",
        params: Iterable[Param] = (),
        **gates: Any,
    ) -> Callable[[Handler], Handler]:
        """A button verb; with ``command``, ``/command ARGS`` runs the same route."""

        def deco(fn: Handler) -> Handler:
            self._route(
                fn,
                command or verb,
                help=help,
                params=tuple(params),
                command=command,
                verb=verb,
                **gates,
            )
            return fn

        return deco

    def state(self, state: State, **gates: Any) -> Callable[[Handler], Handler]:
        """The text a citizen sends while in this dialogue state."""

        def deco(fn: Handler) -> Handler:
            self.states[state] = self._route(fn, f"state:{state}", **gates)
            return fn

        return deco

    def text(self, match: Matcher, **gates: Any) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.texts.append((match, self._route(fn, None, **gates)))
            return fn

        return deco

    def reaction(self, match: Matcher, **gates: Any) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.reactions.append((match, self._route(fn, None, **gates)))
            return fn

        return deco

    def file(self, **gates: Any) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.files.append(self._route(fn, None, **gates))
            return fn

        return deco


Middleware = Callable[[Ctx, Callable[[Ctx], list[OutboundMessage]]], list[OutboundMessage]]


class Dispatcher:
    """Composes routers; turns one inbound event into outbound messages inside a unit of work.

    The order for one event: resolve its route (never by a button's label) → the middlewares
    given (role lookup, flood) → the route's gates (role, parameters, chat kind, phase) → the
    ``gated`` middlewares (privacy consent) → the handler, inside a savepoint that a domain error
    rolls back."""

    def __init__(
        self,
        routers: Iterable[Router],
        *,
        admins: Iterable[str] = (),
        fallback_text: Handler | None = None,
        middlewares: Iterable[Middleware] = (),
        gated: Iterable[Middleware] = (),
        settings: Settings | None = None,
    ) -> None:
        self.routers = list(routers)
        self.routes: dict[str, Route] = {}
        self.commands: dict[str, Route] = {}
        self.actions: dict[str, Route] = {}
        self.states: dict[State, Route] = {}
        self.texts: list[tuple[Matcher, Route]] = []
        self.reactions: list[tuple[Matcher, Route]] = []
        self.files: list[Route] = []
        for r in self.routers:
            for route in r.routes:
                if route.name in self.routes:
                    raise ValueError(f"route {route.name} declared twice")
                self.routes[route.name] = route
                if route.command:
                    self.commands[route.command] = route
                if route.verb:
                    self.actions[route.verb] = route
            self.states.update(r.states)
            self.texts.extend(r.texts)
            self.reactions.extend(r.reactions)
            self.files.extend(r.files)
        self.fallback = Route("fallback", fallback_text or (lambda ctx: None))
        self.admins = frozenset(admins)
        self.consultation_cache = ConsultationCache()
        self.middlewares = [*middlewares, _gates, *gated, _domain_errors]
        # For features that need configuration in their handlers (moderation, privacy).
        self.settings = settings if settings is not None else Settings()
        # What features remember between events of this dispatcher (hints that save a query,
        # never a permission): per composition, never module-level.
        self.memo: dict[str, object] = {}

    # ----- metadata for help and menus

    def visible_commands(self, role: Role) -> list[Route]:
        return [c for c in self.commands.values() if c.role <= role and not c.hidden]

    def typed_command(self, action: str) -> str | None:
        """``sup:12`` → ``/support 12``: the typed equivalent of a button."""
        try:
            parsed = parse(action)
        except ActionCodecError:
            return None
        route = self.actions.get(parsed.verb)
        if route is None or route.command is None:
            return None
        return " ".join(["/" + route.command, *parsed.args])

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
        try:
            resolved = self.resolve(ctx)
            if isinstance(resolved, list):
                replies = resolved
            else:
                ctx.resolved = resolved
                ctx.route = resolved.route
                replies = self._chain(0)(ctx)
        except errors.DomainError as exc:
            # Raised by a gate (old button, phase), before any handler ran.
            replies = [ctx.reply(RichText().p(exc.translated()))]
        replies = _answer_once(event, replies)
        if not caps.buttons:
            replies = self._number_options(ctx, replies)
        repos.dialogues.save(ctx.dialogue, now)
        return replies

    def resolve(self, ctx: Ctx) -> Resolved | list[OutboundMessage]:
        """The route this event runs, with its raw arguments; or a reply when it has none
        (an unknown command, unsupported content)."""
        payload = ctx.event.payload
        if isinstance(payload, CommandMessage):
            route = self.commands.get(payload.name)
            if route is None or (route.hidden and route.role > ctx.role):
                return [
                    ctx.reply(
                        RichText().p(
                            gettext(
                                "I don't know the command /{name}. Type /help to see what you "
                                "can do."
                            ).format(name=payload.name[:32])
                        )
                    )
                ]
            return Resolved(route, tuple(payload.args), payload.rest)
        if isinstance(payload, ActionPressed):
            return self._pressed(payload.action)
        if isinstance(payload, TextMessage):
            option = self._numbered_option(ctx, payload.text)
            if option is not None:
                return option
            for match, route in self.texts:
                values = match(ctx)
                if values is not None:
                    return Resolved(route, values=values)
            state_route = self.states.get(ctx.state)
            return Resolved(state_route if state_route is not None else self.fallback)
        if isinstance(payload, ReactionAdded):
            for match, route in self.reactions:
                values = match(ctx)
                if values is not None:
                    return Resolved(route, values=values)
            return []
        if isinstance(payload, FileReceived):
            # Files are read only where a route takes them (administrators' consultation
            # files, in private); for anyone else a file is content the bot cannot read.
            kind = Chats.PRIVATE if ctx.private else Chats.GROUP
            for route in self.files:
                if route.role <= ctx.role and kind & route.chats:
                    return Resolved(route)
            return [ctx.reply(RichText().p(gettext(_UNSUPPORTED)))]
        if isinstance(payload, Unsupported):
            message = _UNSUPPORTED_KINDS.get(payload.what, _UNSUPPORTED)
            return [ctx.reply(RichText().p(gettext(message)))]
        return []

    def _pressed(self, data: str) -> Resolved:
        try:
            action = parse(data)
        except ActionCodecError:
            raise errors.StaleAction() from None
        route = self.actions.get(action.verb)
        if route is None:
            raise errors.StaleAction()
        return Resolved(route, action.args, pressed=True)

    def _numbered_option(self, ctx: Ctx, text: str) -> Resolved | list[OutboundMessage] | None:
        """On channels without buttons, a reply "2" in a private chat presses option 2 of the
        last keyboard. In a group a bare number is ordinary chat, never a choice."""
        number = text.strip()
        if ctx.caps.buttons or not ctx.private or not number.isdigit():
            return None
        options = ctx.data("options") or {}
        if not options:
            return None
        data = options.get(number.lstrip("0"))
        if data is None:
            return [
                ctx.reply(
                    RichText().p(
                        gettext(
                            "There is no option {number} in my last message: type one of the "
                            "numbers shown, or a command."
                        ).format(number=number[:6])
                    )
                )
            ]
        return self._pressed(data)

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
                    typed = self.typed_command(button.action)
                    if not ctx.private:
                        # Options are chosen in private chats only: show the typed command.
                        if typed:
                            text = text.opt(f"{button.label} — ", Span(typed, code=True))
                        continue
                    number = str(len(options) + 1)
                    options[number] = button.action
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
            return _run
        middleware = self.middlewares[index]
        nxt = self._chain(index + 1)
        return lambda ctx: middleware(ctx, nxt)


def _run(ctx: Ctx) -> list[OutboundMessage]:
    route = ctx.route
    assert route is not None
    try:
        return _as_list(route.handler(ctx))
    except (ActionCodecError, IndexError, ValueError, OverflowError):
        # A handler's own reading of its arguments failed: the declaration was too loose.
        log.debug("route %s refused its arguments", route.name)
        if ctx.resolved is not None and ctx.resolved.pressed:
            raise errors.StaleAction() from None
        return [ctx.reply(RichText().p(route.usage()))]


def _gates(ctx: Ctx, nxt: Callable[[Ctx], list[OutboundMessage]]) -> list[OutboundMessage]:
    """The route's declared gates, in order: role, parameters, chat kind, phase."""
    route, resolved = ctx.route, ctx.resolved
    assert route is not None and resolved is not None
    if route.role > ctx.role:
        if route.role >= Role.MODERATOR:
            raise errors.NotAModerator()
        raise errors.StaleAction()
    if resolved.values is not None:
        ctx.params = dict(resolved.values)
    else:
        try:
            parsed = parse_params(route.params, resolved.tokens, resolved.rest)
        except BadArguments:
            if resolved.pressed:
                raise errors.StaleAction() from None
            return [ctx.reply(RichText().p(route.usage()))]
        ctx.params = parsed.values
        ctx.args = parsed.tokens
        ctx.rest = resolved.rest or ""
        if route.verb is not None:
            ctx.action = Action(route.verb, parsed.tokens)
    kind = Chats.PRIVATE if ctx.private else Chats.GROUP
    if not kind & route.chats:
        return [private_only_reply(ctx)]
    if route.phase is not None:
        require(_consultation_of(ctx), ctx.now, route.phase)
    return nxt(ctx)


def _consultation_of(ctx: Ctx) -> ConsultationInfo:
    """The consultation a route acts in: the idea's when it names one, else the dialogue's."""
    idea = ctx.params.get("idea")
    if isinstance(idea, int):
        row = ctx.repos.contributions.get(idea)
        if row is None:
            raise errors.UnknownContribution(id=idea)
        return ctx.services.consultations.get(row.consultation_id)
    return ctx.consultation()


def private_only_reply(ctx: Ctx) -> OutboundMessage:
    """The answer to something that happens only in a private chat, asked in a group."""
    info = None
    with contextlib.suppress(errors.DomainError):
        info = ctx.consultation()
    link = ctx.caps_deep_link(info.slug) if info is not None else None
    keyboard = ((Button("✍️ " + gettext("Participate in private"), url=link),),) if link else ()
    return ctx.reply(RichText().p(gettext(_PRIVATE_ONLY)), keyboard)


def _answer_once(event: InboundEvent, replies: list[OutboundMessage]) -> list[OutboundMessage]:
    """A pressed button is answered exactly once (its spinner stops): by the first reply, or
    by a silent answer when there is none."""
    payload = event.payload
    if not isinstance(payload, ActionPressed) or payload.query_id is None:
        return replies
    query = payload.query_id
    out: list[OutboundMessage] = []
    answered = False
    for message in replies:
        if message.answers == query and not answered:
            answered = True
            out.append(message)
        elif message.answers == query:
            out.append(replace(message, answers=None))
        else:
            out.append(message)
    if not answered:
        if out and out[0].chat_id == event.context.chat_id:
            out[0] = replace(out[0], answers=query)
        else:
            out.insert(0, OutboundMessage(chat_id=event.context.chat_id, answers=query))
    return out


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
