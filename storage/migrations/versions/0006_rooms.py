"""chat kinds persisted per chat (Matrix rooms stay rooms after a restart)

Revision ID: 0006_rooms
Revises: 0005_merge
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0006_rooms'
down_revision: str | Sequence[str] | None = '0005_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled by the trust issue, item 3


def downgrade() -> None:
    pass  # filled by the trust issue, item 3
