"""official answers, merged duplicates, cached opinion groups

Revision ID: 0012_answers
Revises: 0011_counters
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012_answers"
down_revision: str | Sequence[str] | None = "0011_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "official_answer",
        sa.Column("contribution_id", sa.Integer(), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultation.id"],
            name=op.f("fk_official_answer_consultation_id_consultation"),
        ),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["contribution.id"],
            name=op.f("fk_official_answer_contribution_id_contribution"),
        ),
        sa.PrimaryKeyConstraint("contribution_id", name=op.f("pk_official_answer")),
    )
    with op.batch_alter_table("official_answer") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_official_answer_consultation_id"), ["consultation_id"], unique=False
        )
    op.create_table(
        "idea_merge",
        sa.Column("contribution_id", sa.Integer(), nullable=False),
        sa.Column("into_id", sa.Integer(), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultation.id"],
            name=op.f("fk_idea_merge_consultation_id_consultation"),
        ),
        sa.ForeignKeyConstraint(
            ["contribution_id"],
            ["contribution.id"],
            name=op.f("fk_idea_merge_contribution_id_contribution"),
        ),
        sa.ForeignKeyConstraint(
            ["into_id"], ["contribution.id"], name=op.f("fk_idea_merge_into_id_contribution")
        ),
        sa.PrimaryKeyConstraint("contribution_id", name=op.f("pk_idea_merge")),
    )
    with op.batch_alter_table("idea_merge") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idea_merge_consultation_id"), ["consultation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_idea_merge_into_id"), ["into_id"], unique=False)
    op.create_table(
        "opinion_groups",
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultation.id"],
            name=op.f("fk_opinion_groups_consultation_id_consultation"),
        ),
        sa.PrimaryKeyConstraint("consultation_id", name=op.f("pk_opinion_groups")),
    )


def downgrade() -> None:
    op.drop_table("opinion_groups")
    with op.batch_alter_table("idea_merge") as batch_op:
        batch_op.drop_index(batch_op.f("ix_idea_merge_into_id"))
        batch_op.drop_index(batch_op.f("ix_idea_merge_consultation_id"))
    op.drop_table("idea_merge")
    with op.batch_alter_table("official_answer") as batch_op:
        batch_op.drop_index(batch_op.f("ix_official_answer_consultation_id"))
    op.drop_table("official_answer")
