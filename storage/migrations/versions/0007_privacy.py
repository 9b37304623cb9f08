"""privacy: indexed erasure, retention of handled inbox/outbox rows

Revision ID: 0007_privacy
Revises: 0006_rooms
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0007_privacy'
down_revision: str | Sequence[str] | None = '0006_rooms'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled by the trust issue, items 4-5


def downgrade() -> None:
    pass  # filled by the trust issue, items 4-5
