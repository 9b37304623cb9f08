"""legible ideas: search, sorting, opinion groups, official answers

Revision ID: 0010_legible
Revises: 0009_routes
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0010_legible'
down_revision: str | Sequence[str] | None = '0009_routes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # filled by the legible issue


def downgrade() -> None:
    pass  # filled by the legible issue
