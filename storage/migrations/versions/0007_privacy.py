"""privacy: indexed erasure, retention of handled inbox/outbox rows

The inbox gets the columns erasure and retention search by (sender, chat, chat type, payload
kind), the outbox the subject of each message (retention keeps the rows replies and reactions
map through). Existing rows are filled in batches; their raw platform payloads (which held the
text and sender of replied-to and forwarded messages) are dropped and their control characters
removed, as bot.ingress now does for every new event.

Revision ID: 0007_privacy
Revises: 0006_rooms
"""

import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007_privacy"
down_revision: str | Sequence[str] | None = "0006_rooms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return unicodedata.normalize("NFC", _CONTROLS.sub("", value))
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _fill_existing_rows() -> None:
    bind = op.get_bind()
    inbox = sa.table(
        "inboxevent",
        sa.column("id", sa.BigInteger()),
        sa.column("event", sa.JSON()),
        sa.column("user_id", sa.String()),
        sa.column("chat_id", sa.String()),
        sa.column("chat_type", sa.String()),
        sa.column("kind", sa.String()),
    )
    last = 0
    while True:
        # Read as text: a PostgreSQL json value holding \u0000 cannot be read as jsonb or text
        # fields, but its text can.
        rows = bind.execute(
            sa.select(inbox.c.id, sa.cast(inbox.c.event, sa.Text))
            .where(inbox.c.id > last)
            .order_by(inbox.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for row_id, text in rows:
            last = row_id
            try:
                event = _clean(_load(text))
                context, payload = event["context"], event["payload"]
            except (ValueError, TypeError, KeyError):
                continue
            context.pop("raw", None)
            context["raw"] = None
            bind.execute(
                inbox.update()
                .where(inbox.c.id == row_id)
                .values(
                    event=event,
                    user_id=str(context.get("user_id") or "")[:255] or None,
                    chat_id=str(context.get("chat_id") or "")[:255] or None,
                    chat_type=str(context.get("chat_type") or "")[:16] or None,
                    kind=str(payload.get("kind") or "")[:16] or None,
                )
            )
    outbox = sa.table(
        "outboxmessage",
        sa.column("id", sa.BigInteger()),
        sa.column("message", sa.JSON()),
        sa.column("subject", sa.String()),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(outbox.c.id, sa.cast(outbox.c.message, sa.Text))
            .where(outbox.c.id > last)
            .order_by(outbox.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for row_id, text in rows:
            last = row_id
            try:
                subject = _load(text).get("subject")
            except (ValueError, TypeError, AttributeError):
                continue
            if subject:
                bind.execute(
                    outbox.update()
                    .where(outbox.c.id == row_id)
                    .values(subject=f"{subject[0]}:{subject[1]}"[:64])
                )


def upgrade() -> None:
    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("chat_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("chat_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.create_index("ix_inboxevent_platform_user", ["platform", "user_id"], unique=False)
        batch_op.create_index("ix_inboxevent_platform_chat", ["platform", "chat_id"], unique=False)
        batch_op.create_index("ix_inboxevent_kind_id", ["kind", "id"], unique=False)
        batch_op.create_index("ix_inboxevent_processed_at", ["processed_at"], unique=False)

    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("trimmed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            "ix_outboxmessage_platform_chat", ["platform", "chat_id"], unique=False
        )
        batch_op.create_index("ix_outboxmessage_created_at", ["created_at"], unique=False)

    _fill_existing_rows()


def downgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.drop_index("ix_outboxmessage_created_at")
        batch_op.drop_index("ix_outboxmessage_platform_chat")
        batch_op.drop_column("trimmed_at")
        batch_op.drop_column("subject")

    with op.batch_alter_table("inboxevent", schema=None) as batch_op:
        batch_op.drop_index("ix_inboxevent_processed_at")
        batch_op.drop_index("ix_inboxevent_kind_id")
        batch_op.drop_index("ix_inboxevent_platform_chat")
        batch_op.drop_index("ix_inboxevent_platform_user")
        batch_op.drop_column("kind")
        batch_op.drop_column("chat_type")
        batch_op.drop_column("chat_id")
        batch_op.drop_column("user_id")
