"""delivery runtime: outbox claims, lanes, counters

Revision ID: 0008_runtime
Revises: 0007_privacy
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0008_runtime'
down_revision: str | Sequence[str] | None = '0007_privacy'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The outbox rows' claim (bot.delivery): who sends the row, and until when.
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    # One pace per bot account, shared by every worker.
    op.create_table(
        'send_pace',
        sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('next_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('account', name=op.f('pk_send_pace')),
    )


def downgrade() -> None:
    op.drop_table('send_pace')
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
