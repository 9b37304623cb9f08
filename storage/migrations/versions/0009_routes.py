"""routes and first contact

Revision ID: 0009_routes
Revises: 0008_runtime
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0009_routes'
down_revision: str | Sequence[str] | None = '0008_runtime'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled by the first-contact issue


def downgrade() -> None:
    pass  # filled by the first-contact issue
