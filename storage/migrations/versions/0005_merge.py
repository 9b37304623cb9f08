"""merge the scheduler and moderation branches into one history

Revision ID: 0005_merge
Revises: 0003_scheduler, 0004_moderation
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0005_merge'
down_revision: str | Sequence[str] | None = ('0003_scheduler', '0004_moderation')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
