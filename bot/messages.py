"""Portable messages: what adapters translate platform payloads into, and what handlers return.

Inbound events carry a frozen context and a kind (text, command, action, reaction, unsupported).
Outbound messages are plain values: rich text (a small node tree, rendered per platform with user
text always escaped), an optional keyboard, an optional attachment, and references to the message
they edit or answer. Both round-trip through JSON so they can sit in the inbox and outbox tables.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

# --------------------------------------------------------------------------- rich text


@dataclass(frozen=True, slots=True)
class Span:
    """A run of text with a style. ``text`` is never markup: renderers escape it."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph (``kind="p"``), a heading (``"h"``), a quotation (``"quote"``), a list
    item (``"li"``) or a numbered option (``"opt"``, a keyboard degraded to text)."""

    spans: tuple[Span, ...]
    kind: Literal["p", "h", "quote", "li", "opt"] = "p"


Inline = str | Span


def _spans(parts: tuple[Inline, ...]) -> tuple[Span, ...]:
    return tuple(Span(p) if isinstance(p, str) else p for p in parts if p != "")


def b(text: str) -> Span:
    return Span(text, bold=True)


def i(text: str) -> Span:
    return Span(text, italic=True)


def code(text: str) -> Span:
    return Span(text, code=True)


def link(text: str, url: str) -> Span:
    return Span(text, link=url)


@dataclass(frozen=True, slots=True)
class RichText:
    blocks: tuple[Block, ...] = ()

    # Builder methods return new values; handlers chain them: RichText().h(t).p(x).
    def h(self, *parts: Inline) -> RichText:
        return RichText((*self.blocks, Block(_spans(parts), "h")))

    def p(self, *parts: Inline) -> RichText:
        return RichText((*self.blocks, Block(_spans(parts), "p")))

    def quote(self, *parts: Inline) -> RichText:
        return RichText((*self.blocks, Block(_spans(parts), "quote")))

    def li(self, *parts: Inline) -> RichText:
        return RichText((*self.blocks, Block(_spans(parts), "li")))

    def opt(self, *parts: Inline) -> RichText:
        return RichText((*self.blocks, Block(_spans(parts), "opt")))

    def paragraphs(self, text: str) -> RichText:
        """Plain multi-paragraph text (content or user text) split on blank lines."""
        out = self
        for chunk in text.replace("\r\n", "\n").split("\n\n"):
            if chunk.strip():
                out = out.p(chunk.strip())
        return out

    def __add__(self, other: RichText) -> RichText:
        return RichText(self.blocks + other.blocks)

    def plain(self) -> str:
        return render_plain(self)


def text(*parts: Inline) -> RichText:
    return RichText().p(*parts)


def render_plain(rt: RichText) -> str:
    out: list[str] = []
    for block in rt.blocks:
        body = "".join(
            (f"{s.text} <{s.link}>" if s.link and s.link != s.text else s.text)
            for s in block.spans
        )
        if block.kind == "h":
            body = body + "\n" + "─" * min(len(body), 40)
        elif block.kind == "quote":
            body = "\n".join("> " + line for line in body.split("\n"))
        elif block.kind == "li":
            body = "• " + body
        out.append(body)
    return _join_blocks(rt, out)


def _join_blocks(rt: RichText, rendered: list[str]) -> str:
    # Items of one list sit on consecutive lines; other blocks are separated by a blank line.
    result = ""
    for idx, chunk in enumerate(rendered):
        if idx:
            same_list = rt.blocks[idx].kind == rt.blocks[idx - 1].kind in ("li", "opt")
            result += "\n" if same_list else "\n\n"
        result += chunk
    return result


def render_html(rt: RichText, *, block_tags: bool = False) -> str:
    """HTML for Telegram's HTML parse mode (``block_tags=False``: newlines between blocks) or
    Matrix ``formatted_body`` (``block_tags=True``). All span text is escaped."""
    out: list[str] = []
    for block in rt.blocks:
        body = "".join(_span_html(s) for s in block.spans)
        if block_tags:
            body = body.replace("\n", "<br>")
            tag = {"p": "p", "h": "h4", "quote": "blockquote", "li": "li", "opt": "li"}[block.kind]
            out.append(f"<{tag}>{body}</{tag}>")
        else:
            if block.kind == "h":
                body = f"<b>{body}</b>"
            elif block.kind == "quote":
                body = f"<blockquote>{body}</blockquote>"
            elif block.kind == "li":
                body = "• " + body
            out.append(body)
    if block_tags:
        return "".join(out)
    return _join_blocks(rt, out)


def _span_html(s: Span) -> str:
    body = html.escape(s.text, quote=False)
    if s.code:
        body = f"<code>{body}</code>"
    if s.bold:
        body = f"<b>{body}</b>"
    if s.italic:
        body = f"<i>{body}</i>"
    if s.link:
        body = f'<a href="{html.escape(s.link, quote=True)}">{body}</a>'
    return body


# --------------------------------------------------------------------------- outbound


@dataclass(frozen=True, slots=True)
class Button:
    """A button carries a compact action id (see ``bot.actions``) or a URL, never logic in its
    label (labels are translated). ``command`` is the typed equivalent shown on channels without
    buttons."""

    label: str
    action: str | None = None
    url: str | None = None


Keyboard = tuple[tuple[Button, ...], ...]


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    mime_type: str
    data: bytes
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A platform message: its chat and its platform message id (as a string)."""

    chat_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    chat_id: str
    text: RichText = field(default_factory=RichText)
    keyboard: Keyboard = ()
    attachment: Attachment | None = None
    # Edit this earlier message in place instead of sending a new one (when the channel can).
    edit: MessageRef | None = None
    # Show this message as an answer to that one.
    reply_to: MessageRef | None = None
    # A short notice for a pressed button (Telegram's callback answer); channels without
    # buttons show it as a line of text when there is no other reply.
    notice: str | None = None
    # What this message shows, e.g. ("contribution", 12): lets channels map reactions and
    # replies on it back to domain objects.
    subject: tuple[str, int] | None = None
    # Callback query being answered (Telegram) so the spinner stops even without a notice.
    answers: str | None = None

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict (which deep-copies every leaf): this runs for
        # every reply, inside the event's transaction.
        att = self.attachment
        return {
            "chat_id": self.chat_id,
            "text": {
                "blocks": [
                    {
                        "spans": [
                            {
                                "text": s.text,
                                "bold": s.bold,
                                "italic": s.italic,
                                "code": s.code,
                                "link": s.link,
                            }
                            for s in blk.spans
                        ],
                        "kind": blk.kind,
                    }
                    for blk in self.text.blocks
                ]
            },
            "keyboard": [
                [{"label": b.label, "action": b.action, "url": b.url} for b in row]
                for row in self.keyboard
            ],
            "attachment": (
                {
                    "filename": att.filename,
                    "mime_type": att.mime_type,
                    "data": base64.b64encode(att.data).decode("ascii"),
                    "caption": att.caption,
                }
                if att is not None
                else None
            ),
            "edit": _ref_json(self.edit),
            "reply_to": _ref_json(self.reply_to),
            "notice": self.notice,
            "subject": list(self.subject) if self.subject else None,
            "answers": self.answers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundMessage:
        att = data.get("attachment")
        return cls(
            chat_id=data["chat_id"],
            text=RichText(
                tuple(
                    Block(tuple(Span(**s) for s in blk["spans"]), blk["kind"])
                    for blk in data["text"]["blocks"]
                )
            ),
            keyboard=tuple(tuple(Button(**btn) for btn in row) for row in data["keyboard"]),
            attachment=(
                Attachment(
                    filename=att["filename"],
                    mime_type=att["mime_type"],
                    data=base64.b64decode(att["data"]),
                    caption=att.get("caption"),
                )
                if att
                else None
            ),
            edit=MessageRef(**data["edit"]) if data.get("edit") else None,
            reply_to=MessageRef(**data["reply_to"]) if data.get("reply_to") else None,
            notice=data.get("notice"),
            subject=(str(data["subject"][0]), int(data["subject"][1]))
            if data.get("subject")
            else None,
            answers=data.get("answers"),
        )


def _ref_json(ref: MessageRef | None) -> dict[str, str] | None:
    return {"chat_id": ref.chat_id, "message_id": ref.message_id} if ref else None


# --------------------------------------------------------------------------- inbound


class ChatType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class EventContext:
    platform: str
    chat_id: str
    user_id: str
    event_id: str
    display_name: str | None = None
    language: str | None = None
    chat_type: ChatType = ChatType.PRIVATE
    # The platform message that carried the event (for a button: the message it was on).
    message: MessageRef | None = None
    # The raw platform payload, as an escape hatch (never needed by the core's handlers).
    raw: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TextMessage:
    text: str
    # The message this one replies to (Matrix reply / Telegram reply), if any.
    reply_to: MessageRef | None = None
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class CommandMessage:
    name: str
    args: tuple[str, ...] = ()
    # Everything after the command name, as typed (for free-text arguments).
    rest: str = ""
    kind: Literal["command"] = "command"


@dataclass(frozen=True, slots=True)
class ActionPressed:
    action: str
    # Callback query id (Telegram) to answer.
    query_id: str | None = None
    kind: Literal["action"] = "action"


@dataclass(frozen=True, slots=True)
class ReactionAdded:
    target: MessageRef
    key: str
    removed: bool = False
    kind: Literal["reaction"] = "reaction"


@dataclass(frozen=True, slots=True)
class FileReceived:
    filename: str
    mime_type: str
    # The content, or b"" when it was not kept (only an administrator's file is: bot.ingress).
    data: bytes
    size: int | None = None
    kind: Literal["file"] = "file"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """Stickers, photos, voice notes, edits...: answered politely or ignored."""

    what: str
    kind: Literal["unsupported"] = "unsupported"


Payload = TextMessage | CommandMessage | ActionPressed | ReactionAdded | FileReceived | Unsupported


@dataclass(frozen=True, slots=True)
class InboundEvent:
    context: EventContext
    payload: Payload

    def to_json(self) -> dict[str, Any]:
        # Shallow, by hand: asdict would deep-copy the raw platform payload of every event.
        ctx = {f.name: getattr(self.context, f.name) for f in fields(self.context)}
        ctx["chat_type"] = str(self.context.chat_type)
        ctx["message"] = _ref_json(self.context.message)
        payload = {f.name: getattr(self.payload, f.name) for f in fields(self.payload)}
        for name, value in payload.items():
            if isinstance(value, MessageRef):
                payload[name] = _ref_json(value)
            elif isinstance(value, tuple):
                payload[name] = list(value)
        if isinstance(self.payload, FileReceived):
            payload["data"] = base64.b64encode(self.payload.data).decode("ascii")
        return {"context": ctx, "payload": payload}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundEvent:
        c = dict(data["context"])
        c["chat_type"] = ChatType(c["chat_type"])
        c["message"] = MessageRef(**c["message"]) if c.get("message") else None
        p = dict(data["payload"])
        kind = p.pop("kind")
        payload: Payload
        if kind == "text":
            p["reply_to"] = MessageRef(**p["reply_to"]) if p.get("reply_to") else None
            payload = TextMessage(**p)
        elif kind == "command":
            p["args"] = tuple(p["args"])
            payload = CommandMessage(**p)
        elif kind == "action":
            payload = ActionPressed(**p)
        elif kind == "reaction":
            p["target"] = MessageRef(**p["target"])
            payload = ReactionAdded(**p)
        elif kind == "file":
            p["data"] = base64.b64decode(p["data"])
            payload = FileReceived(**p)
        else:
            payload = Unsupported(**p)
        return cls(EventContext(**c), payload)


def parse_command(text: str, bot_username: str | None = None) -> CommandMessage | None:
    """``/name@bot arg1 arg2`` → CommandMessage; ``None`` if the text is not a command or is
    addressed to another bot."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    head, _, rest = stripped[1:].partition(" ")
    head = head.split("\n", 1)[0]
    name, _, target = head.partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    if not name or not all(ch.isalnum() or ch == "_" for ch in name):
        return None
    rest = stripped[1 + len(head) :].strip()
    return CommandMessage(name=name.lower(), args=tuple(rest.split()), rest=rest)
