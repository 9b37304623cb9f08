"""delivery runtime: outbox claims, lanes, counters

Revision ID: 0008_runtime
Revises: 0007_privacy
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0008_runtime'
down_revision: str | Sequence[str] | None = '0007_privacy'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled by the runtime issue


def downgrade() -> None:
    pass  # filled by the runtime issue
