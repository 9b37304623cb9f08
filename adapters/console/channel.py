"""The console channel: the same core in a terminal, for the demo, for trying a consultation
before publishing it, and for tests.

Keyboards arrive already degraded to numbered options by the core (the channel declares no
buttons), so typing ``2`` presses option 2. ``/as NAME [fr|en]`` switches to another citizen so
one person can watch supports and statistics move.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from bot.engine import Engine
from bot.messages import (
    ChatType,
    EventContext,
    InboundEvent,
    OutboundMessage,
    Payload,
    TextMessage,
    parse_command,
    render_plain,
)
from bot.router import Capabilities

PLATFORM = "console"
CAPABILITIES = Capabilities(buttons=False, edits=False, max_length=100_000)
BOT_NAME = "parlons"


@dataclass
class ConsoleChannel:
    engine: Engine
    out: TextIO
    user: str = "alice"
    language: str = "fr"
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Each console citizen keeps the language hint they were given.
    languages: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine.register_channel(PLATFORM, CAPABILITIES)

    def event(self, payload: Payload) -> InboundEvent:
        return InboundEvent(
            EventContext(
                platform=PLATFORM,
                chat_id=self.user,
                user_id=self.user,
                event_id=f"{self.session}-{next(self._ids)}",
                display_name=self.user.capitalize(),
                language=self.language,
                chat_type=ChatType.PRIVATE,
            ),
            payload,
        )

    def send(self, line: str) -> list[OutboundMessage]:
        """One line typed by the current citizen → the bot's replies (also printed)."""
        stripped = line.strip()
        if stripped.startswith("/as"):
            parts = stripped.split()
            if len(parts) >= 2:
                self.languages[self.user] = self.language
                self.user = parts[1].lower()[:32]
                self.language = (
                    parts[2].lower()
                    if len(parts) >= 3
                    else self.languages.get(self.user, self.language)
                )
                self._print(f"— you are now {self.user} ({self.language}) —")
            return []
        payload: Payload = parse_command(stripped) or TextMessage(line)
        replies: list[OutboundMessage] = []
        for delivery in self.engine.handle(self.event(payload)):
            self.show(delivery.message)
            self.engine.mark_sent(delivery.outbox_id, f"c{delivery.outbox_id}")
            replies.append(delivery.message)
        return replies

    def show(self, message: OutboundMessage) -> None:
        body = render_plain(message.text)
        if message.notice and not body:
            body = message.notice
        if message.attachment:
            body += f"\n📎 {message.attachment.filename} ({len(message.attachment.data)} bytes)"
        prefix = f"{BOT_NAME} ▸ "
        indent = " " * len(prefix)
        lines = body.split("\n") if body else [""]
        self._print(prefix + lines[0] + "".join("\n" + indent + ln for ln in lines[1:]))

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run_script(self, lines: Iterable[str]) -> None:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            self._print(f"\n{self.user} ▸ {line}")
            self.send(line)

    def interactive(self) -> None:
        self._print(
            "Parlons console — type /help, a number to press an option, "
            "/as NAME [fr|en] to switch citizen, /quit to leave."
        )
        try:
            while True:
                try:
                    line = input(f"{self.user} ▸ ")
                except EOFError:
                    break
                if line.strip() in ("/quit", "/exit"):
                    break
                self.send(line)
        except KeyboardInterrupt:
            self._print("")
