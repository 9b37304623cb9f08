"""A chat harness for the core: push a message, get the replies as values (no network).

``Chat`` drives the real engine (inbox → dispatcher → outbox) on a real database. With
``buttons=False`` it behaves like the console/Matrix (numbered options); with ``buttons=True``
like Telegram (``press`` sends an ``ActionPressed`` carrying the message the button was on).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.engine import Engine
from bot.messages import (
    ActionPressed,
    Button,
    ChatType,
    EventContext,
    InboundEvent,
    MessageRef,
    OutboundMessage,
    Payload,
    ReactionAdded,
    TextMessage,
    parse_command,
    render_plain,
)
from bot.router import Capabilities

_ids = itertools.count(1)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now if now.tzinfo else now.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Replies(list[OutboundMessage]):
    @property
    def text(self) -> str:
        return "\n\n".join(render_plain(m.text) for m in self)

    def buttons(self) -> list[tuple[OutboundMessage, Button]]:
        return [(m, b) for m in self for row in m.keyboard for b in row]

    def actions(self) -> list[str]:
        return [b.action for _m, b in self.buttons() if b.action]

    def subjects(self) -> list[tuple[str, int]]:
        return [m.subject for m in self if m.subject]


@dataclass
class Chat:
    engine: Engine
    user: str = "alice"
    language: str | None = "fr"
    platform: str = "console"
    buttons: bool = False
    chat_type: ChatType = ChatType.PRIVATE
    chat_id: str | None = None
    last: Replies = field(default_factory=Replies)
    # platform message id → the message sent (so presses and reactions can point at it)
    sent: dict[str, OutboundMessage] = field(default_factory=dict)
    # Accept the privacy notice before the first event (unless already accepted), as a citizen
    # who read it would; False to test the notice itself.
    accept_privacy: bool = True
    # The name the platform shows (default: the user id, capitalised). Never an identity.
    display_name: str | None = None
    _privacy_done: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.engine.register_channel(
            self.platform,
            Capabilities(
                buttons=self.buttons,
                edits=self.buttons,
                deep_link="https://t.me/parlons_bot?start={payload}",
            ),
        )

    def _event(self, payload: Payload, message: MessageRef | None = None) -> InboundEvent:
        return InboundEvent(
            EventContext(
                platform=self.platform,
                chat_id=self.chat_id or self.user,
                user_id=self.user,
                event_id=f"{self.platform}-{next(_ids)}",
                display_name=self.display_name or self.user.capitalize(),
                language=self.language,
                chat_type=self.chat_type,
                message=message,
            ),
            payload,
        )

    def deliver(self, event: InboundEvent) -> Replies:
        self._accept_privacy()
        out = Replies()
        for d in self.engine.handle(event):
            if d.message.edit is not None:
                message_id = d.message.edit.message_id
            else:
                message_id = f"m{d.outbox_id}"
            self.engine.mark_sent(d.outbox_id, message_id)
            self.sent[message_id] = d.message
            out.append(d.message)
        self.last = out
        return out

    def _accept_privacy(self) -> None:
        if self._privacy_done or not self.accept_privacy:
            return
        self._privacy_done = True
        from sqlmodel import select

        from bot.messages import CommandMessage
        from bot.privacy import NOTICE_VERSION
        from storage.models_moderation import PrivacyConsent
        from storage.repositories import Repos

        db = self.engine.db
        with db.session() as session:
            citizen = Repos(db, session).citizens.by_platform_id(self.platform, self.user)
            accepted = (
                citizen is not None
                and session.exec(
                    select(PrivacyConsent).where(
                        PrivacyConsent.citizen_id == citizen.id,
                        PrivacyConsent.version == NOTICE_VERSION,
                    )
                ).first()
                is not None
            )
        if not accepted:
            for d in self.engine.handle(self._event(CommandMessage("accept"))):
                self.engine.mark_sent(d.outbox_id, f"m{d.outbox_id}")

    def receive(self) -> Replies:
        """Messages the bot wrote to this chat on its own (not as replies to this chat's
        events): moderation cards, notices to an author. Marked sent, like ``deliver``."""
        from sqlmodel import select

        from storage.models import OutboxMessage

        db = self.engine.db
        with db.session() as session:
            rows = session.exec(
                select(OutboxMessage)
                .where(
                    OutboxMessage.platform == self.platform,
                    OutboxMessage.chat_id == (self.chat_id or self.user),
                    OutboxMessage.status == "pending",
                )
                .order_by(OutboxMessage.id)
            ).all()
            pending = [(r.id, OutboundMessage.from_json(r.message)) for r in rows]
        out = Replies()
        for outbox_id, message in pending:
            assert outbox_id is not None
            self.engine.mark_sent(outbox_id, f"m{outbox_id}")
            self.sent[f"m{outbox_id}"] = message
            out.append(message)
        self.last = out
        return out

    def send(self, text: str, reply_to: str | None = None) -> Replies:
        payload: Payload = parse_command(text, "parlons_bot") or TextMessage(
            text, reply_to=MessageRef(self.chat_id or self.user, reply_to) if reply_to else None
        )
        return self.deliver(self._event(payload))

    def send_file(self, filename: str, data: bytes, mime_type: str = "text/yaml") -> Replies:
        from bot.messages import FileReceived

        return self.deliver(self._event(FileReceived(filename, mime_type, data)))

    def press(self, action: str) -> Replies:
        """Press the button with this action id (or action prefix) in the last replies; on a
        channel without buttons, type the number of that option."""
        if not self.buttons:
            options = self._options()
            for number, data in options.items():
                if data == action or data.startswith(action):
                    return self.send(number)
            raise AssertionError(f"no option {action!r} in {options}")
        for message, button in reversed(self.last.buttons()):
            if button.action == action or (button.action or "").startswith(action):
                ref = self._ref_of(message)
                return self.deliver(self._event(ActionPressed(button.action or "", "q1"), ref))
        raise AssertionError(f"no button {action!r} in {self.last.actions()}")

    def press_stale(self, action: str, message_id: str = "m1") -> Replies:
        ref = MessageRef(self.chat_id or self.user, message_id)
        return self.deliver(self._event(ActionPressed(action, "q2"), ref))

    def react(self, message_id: str, key: str = "👍", removed: bool = False) -> Replies:
        target = MessageRef(self.chat_id or self.user, message_id)
        return self.deliver(self._event(ReactionAdded(target, key, removed)))

    def message_id_of(self, subject: tuple[str, int]) -> str:
        for mid, message in self.sent.items():
            if message.subject == subject:
                return mid
        raise AssertionError(f"no message about {subject}")

    def _ref_of(self, message: OutboundMessage) -> MessageRef:
        for mid, sent in self.sent.items():
            if sent is message:
                return MessageRef(self.chat_id or self.user, mid)
        raise AssertionError("message was not sent")

    def _options(self) -> dict[str, str]:
        from storage.repositories import Repos

        db = self.engine.db
        with db.session() as session:
            row = Repos(db, session).dialogues.load(
                self.platform, self.chat_id or self.user, self.user, self.engine.clock()
            )
            return dict((row.data or {}).get("options") or {})
