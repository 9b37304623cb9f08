"""legible ideas: search, sorting, opinion groups, official answers

Revision ID: 0010_legible
Revises: 0009_routes

Disagreements (one per citizen and idea), the ideas /sort dealt to each citizen, and the ideas' text index: on PostgreSQL a GIN index on
the French and English tsvector of ``contribution.text``; on SQLite an external-content FTS5
table over ``contribution.text`` kept in sync by triggers (a migration that rebuilds
``contribution`` in batch mode must create them again, like 0011_counters' triggers).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0010_legible'
down_revision: str | Sequence[str] | None = '0009_routes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keep in step with storage.repositories_legible.PG_VECTOR.
PG_VECTOR = "(to_tsvector('french', text) || to_tsvector('english', text))"


SQLITE_TRIGGERS = (
    "CREATE TRIGGER idea_fts_insert AFTER INSERT ON contribution BEGIN "
    "INSERT INTO idea_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER idea_fts_delete AFTER DELETE ON contribution BEGIN "
    "INSERT INTO idea_fts(idea_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER idea_fts_update AFTER UPDATE OF text ON contribution BEGIN "
    "INSERT INTO idea_fts(idea_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO idea_fts(rowid, text) VALUES (new.id, new.text); END",
)


def upgrade() -> None:
    op.create_table('disagreement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contribution_id', sa.Integer(), nullable=False),
    sa.Column('citizen_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_disagreement_citizen_id_citizen')),
    sa.ForeignKeyConstraint(['contribution_id'], ['contribution.id'], name=op.f('fk_disagreement_contribution_id_contribution')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disagreement')),
    sa.UniqueConstraint('contribution_id', 'citizen_id', name=op.f('uq_disagreement_contribution_id_citizen_id'))
    )
    with op.batch_alter_table('disagreement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disagreement_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disagreement_contribution_id'), ['contribution_id'], unique=False)
    op.create_table('sort_dealt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('citizen_id', sa.Integer(), nullable=False),
    sa.Column('contribution_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_sort_dealt_citizen_id_citizen')),
    sa.ForeignKeyConstraint(['contribution_id'], ['contribution.id'], name=op.f('fk_sort_dealt_contribution_id_contribution')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sort_dealt')),
    sa.UniqueConstraint('citizen_id', 'contribution_id', name=op.f('uq_sort_dealt_citizen_id_contribution_id'))
    )
    with op.batch_alter_table('sort_dealt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sort_dealt_contribution_id'), ['contribution_id'], unique=False)
    if op.get_bind().dialect.name == 'sqlite':
        # An external-content FTS5 index of contribution.text, kept in sync by triggers (plain
        # SQL: any client writing the database keeps it right); diacritics folded. Queries use
        # the French and English Snowball stems of their words as prefixes (storage.text_index).
        op.execute(
            "CREATE VIRTUAL TABLE idea_fts USING fts5(text, content='contribution', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
        )
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
        op.execute("INSERT INTO idea_fts(idea_fts) VALUES ('rebuild')")
    else:
        op.execute(f"CREATE INDEX ix_contribution_text_search ON contribution USING gin ({PG_VECTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in ("idea_fts_insert", "idea_fts_delete", "idea_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS idea_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_contribution_text_search")
    with op.batch_alter_table('sort_dealt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sort_dealt_contribution_id'))
    op.drop_table('sort_dealt')
    with op.batch_alter_table('disagreement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disagreement_contribution_id'))
        batch_op.drop_index(batch_op.f('ix_disagreement_citizen_id'))
    op.drop_table('disagreement')
