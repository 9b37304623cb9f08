"""routes and first contact: questions archived by a re-import keep their contributions

Revision ID: 0009_routes
Revises: 0008_runtime
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009_routes'
down_revision: str | Sequence[str] | None = '0008_runtime'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('archived_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column('archived_texts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_column('archived_texts')
        batch_op.drop_column('archived_at')
