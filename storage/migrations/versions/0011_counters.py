# ruff: noqa: S608  (SQL assembled from constants of this file, no outside input)
"""statistics counters kept by triggers (stat_counter, stat_delta, stat_participant)

Revision ID: 0011_counters
Revises: 0010_legible

The triggers keep each consultation's public statistics up to date in the same transaction as
the change (see storage/models_counters.py for the scheme). Definitions (README "Statistics,
precisely"): contributions = published ones; supports = supports on published contributions;
comments = published comments on published contributions; visitors = visit rows;
participants = citizens with at least one published contribution, support on a published
contribution or published comment on a published contribution.

The existing rows are counted once here (before the triggers exist), then the triggers move
the counters.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_counters"
down_revision: str | Sequence[str] | None = "0010_legible"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("participants", "contributions", "supports", "visitors", "comments")

# ---------------------------------------------------------------------------------- backfill

WEIGHTS = """
INSERT INTO stat_participant (consultation_id, citizen_id, weight)
SELECT consultation_id, citizen_id, sum(w) FROM (
    SELECT consultation_id, citizen_id, 1 AS w FROM contribution WHERE status = 'published'
    UNION ALL
    SELECT c.consultation_id, s.citizen_id, 1 FROM support s
        JOIN contribution c ON c.id = s.contribution_id WHERE c.status = 'published'
    UNION ALL
    SELECT c.consultation_id, m.citizen_id, 1 FROM comment m
        JOIN contribution c ON c.id = m.contribution_id
        WHERE c.status = 'published' AND m.status = 'published'
) AS x GROUP BY consultation_id, citizen_id
"""

TOTALS = """
INSERT INTO stat_counter (consultation_id, participants, contributions, supports, visitors,
                          comments)
SELECT k.id,
    (SELECT count(*) FROM stat_participant p WHERE p.consultation_id = k.id AND p.weight > 0),
    (SELECT count(*) FROM contribution c WHERE c.consultation_id = k.id
        AND c.status = 'published'),
    (SELECT count(*) FROM support s JOIN contribution c ON c.id = s.contribution_id
        WHERE c.consultation_id = k.id AND c.status = 'published'),
    (SELECT count(*) FROM visit v WHERE v.consultation_id = k.id),
    (SELECT count(*) FROM comment m JOIN contribution c ON c.id = m.contribution_id
        WHERE c.consultation_id = k.id AND c.status = 'published' AND m.status = 'published')
FROM consultation k
"""

# ---------------------------------------------------------------------------------- SQLite
# One writer at a time: the triggers update the totals row directly.


def _sqlite_add(consultation: str, where: str, **deltas: str) -> str:
    """Add ``deltas`` (SQL expressions) to the totals of ``consultation`` if ``where``."""
    values = ", ".join(deltas.get(k, "0") for k in COUNTS)
    sets = ", ".join(f"{k} = {k} + excluded.{k}" for k in COUNTS if k in deltas)
    return (
        f"INSERT INTO stat_counter (consultation_id, {', '.join(COUNTS)}) "
        f"SELECT {consultation}, {values} WHERE {where} "
        f"ON CONFLICT (consultation_id) DO UPDATE SET {sets};"
    )


def _sqlite_weight(select: str) -> str:
    """Add to participants' weights: ``select`` yields (consultation_id, citizen_id, delta)."""
    return (
        f"INSERT INTO stat_participant (consultation_id, citizen_id, weight) {select} "
        "ON CONFLICT (consultation_id, citizen_id) "
        "DO UPDATE SET weight = weight + excluded.weight;"
    )


def _sqlite_contribution_effect(row: str, sign: str) -> str:
    """A published contribution counts: itself, its author, its supports and supporters, its
    published comments and commenters. ``row`` is OLD or NEW; ``sign`` '+' or '-'."""
    guard = f"{row}.status = 'published'"
    return "\n".join(
        (
            _sqlite_weight(
                f"SELECT {row}.consultation_id, {row}.citizen_id, {sign}1 WHERE {guard}"
            ),
            _sqlite_weight(
                f"SELECT {row}.consultation_id, citizen_id, {sign}count(*) FROM support "
                f"WHERE contribution_id = {row}.id AND {guard} GROUP BY citizen_id"
            ),
            _sqlite_weight(
                f"SELECT {row}.consultation_id, citizen_id, {sign}count(*) FROM comment "
                f"WHERE contribution_id = {row}.id AND status = 'published' AND {guard} "
                "GROUP BY citizen_id"
            ),
            _sqlite_add(
                f"{row}.consultation_id",
                guard,
                contributions=f"{sign}1",
                supports=f"{sign}(SELECT count(*) FROM support WHERE contribution_id = {row}.id)",
                comments=(
                    f"{sign}(SELECT count(*) FROM comment WHERE contribution_id = {row}.id "
                    "AND status = 'published')"
                ),
            ),
        )
    )


def _sqlite_child_effect(row: str, sign: str, comment: bool) -> str:
    """A support (or a published comment) on a published contribution counts, with its
    author as a participant."""
    published = "AND c.status = 'published'"
    own = f"AND {row}.status = 'published'" if comment else ""
    source = f"FROM contribution c WHERE c.id = {row}.contribution_id {published} {own}"
    counter = "comments" if comment else "supports"
    return "\n".join(
        (
            _sqlite_weight(f"SELECT c.consultation_id, {row}.citizen_id, {sign}1 {source}"),
            f"INSERT INTO stat_counter (consultation_id, {', '.join(COUNTS)}) "
            f"SELECT c.consultation_id, "
            + ", ".join(f"{sign}1" if k == counter else "0" for k in COUNTS)
            + f" {source} ON CONFLICT (consultation_id) DO UPDATE SET "
            f"{counter} = {counter} + excluded.{counter};",
        )
    )


def _sqlite_triggers() -> list[str]:
    changed_contribution = (
        "(OLD.status = 'published') <> (NEW.status = 'published') OR (OLD.status = 'published' "
        "AND (OLD.citizen_id <> NEW.citizen_id OR OLD.consultation_id <> NEW.consultation_id))"
    )
    return [
        # Participants: a weight crossing zero.
        "CREATE TRIGGER stat_participant_ins AFTER INSERT ON stat_participant "
        "WHEN NEW.weight > 0 BEGIN "
        + _sqlite_add("NEW.consultation_id", "1", participants="1")
        + " END",
        "CREATE TRIGGER stat_participant_upd AFTER UPDATE OF weight ON stat_participant "
        "WHEN (OLD.weight > 0) <> (NEW.weight > 0) BEGIN "
        + _sqlite_add(
            "NEW.consultation_id", "1", participants="CASE WHEN NEW.weight > 0 THEN 1 ELSE -1 END"
        )
        + " END",
        "CREATE TRIGGER stat_participant_del AFTER DELETE ON stat_participant "
        "WHEN OLD.weight > 0 BEGIN "
        + _sqlite_add("OLD.consultation_id", "1", participants="-1")
        + " END",
        # Contributions.
        "CREATE TRIGGER stat_contribution_ins AFTER INSERT ON contribution "
        "WHEN NEW.status = 'published' BEGIN " + _sqlite_contribution_effect("NEW", "+") + " END",
        "CREATE TRIGGER stat_contribution_upd AFTER UPDATE OF status, citizen_id, "
        f"consultation_id ON contribution WHEN {changed_contribution} BEGIN "
        + _sqlite_contribution_effect("OLD", "-")
        + "\n"
        + _sqlite_contribution_effect("NEW", "+")
        + " END",
        "CREATE TRIGGER stat_contribution_del AFTER DELETE ON contribution "
        "WHEN OLD.status = 'published' BEGIN " + _sqlite_contribution_effect("OLD", "-") + " END",
        # Supports.
        "CREATE TRIGGER stat_support_ins AFTER INSERT ON support BEGIN "
        + _sqlite_child_effect("NEW", "+", comment=False)
        + " END",
        "CREATE TRIGGER stat_support_upd AFTER UPDATE OF citizen_id, contribution_id ON support "
        "BEGIN "
        + _sqlite_child_effect("OLD", "-", comment=False)
        + "\n"
        + _sqlite_child_effect("NEW", "+", comment=False)
        + " END",
        "CREATE TRIGGER stat_support_del AFTER DELETE ON support BEGIN "
        + _sqlite_child_effect("OLD", "-", comment=False)
        + " END",
        # Comments.
        "CREATE TRIGGER stat_comment_ins AFTER INSERT ON comment BEGIN "
        + _sqlite_child_effect("NEW", "+", comment=True)
        + " END",
        "CREATE TRIGGER stat_comment_upd AFTER UPDATE OF status, citizen_id, contribution_id "
        "ON comment BEGIN "
        + _sqlite_child_effect("OLD", "-", comment=True)
        + "\n"
        + _sqlite_child_effect("NEW", "+", comment=True)
        + " END",
        "CREATE TRIGGER stat_comment_del AFTER DELETE ON comment BEGIN "
        + _sqlite_child_effect("OLD", "-", comment=True)
        + " END",
        # Visits.
        "CREATE TRIGGER stat_visit_ins AFTER INSERT ON visit BEGIN "
        + _sqlite_add("NEW.consultation_id", "1", visitors="1")
        + " END",
        "CREATE TRIGGER stat_visit_upd AFTER UPDATE OF consultation_id ON visit BEGIN "
        + _sqlite_add("OLD.consultation_id", "1", visitors="-1")
        + _sqlite_add("NEW.consultation_id", "1", visitors="1")
        + " END",
        "CREATE TRIGGER stat_visit_del AFTER DELETE ON visit BEGIN "
        + _sqlite_add("OLD.consultation_id", "1", visitors="-1")
        + " END",
    ]


SQLITE_TRIGGERS = [
    f"stat_{table}_{op_}"
    for table in ("participant", "contribution", "support", "comment", "visit")
    for op_ in ("ins", "upd", "del")
]

# ---------------------------------------------------------------------------------- PostgreSQL
# Several workers: the triggers append deltas (no row lock shared by every transaction); a
# support or comment locks its contribution row FOR SHARE, so a concurrent hide or restore of
# that contribution counts it on exactly one side.


def _child_function(table: str) -> str:
    """The trigger function of ``support`` or ``comment`` rows (a comment counts only while
    published; both only on a published contribution). The contribution is locked FOR SHARE
    whatever its status: a concurrent hide or restore then either waits for this transaction
    (and its recount of the contribution's supports sees this one) or went first (and this
    reads the status it left)."""
    comment = table == "comment"
    counts = "p, 0, 0, 0, {}" if comment else "p, 0, {}, 0, 0"
    old_own = " AND OLD.status = 'published'" if comment else ""
    new_own = " AND NEW.status = 'published'" if comment else ""
    return f"""
CREATE FUNCTION parlons_stat_{table}_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c bigint;
    st text;
    p bigint;
BEGIN
    IF TG_OP <> 'INSERT'{old_own} THEN
        SELECT consultation_id, status INTO c, st FROM contribution
            WHERE id = OLD.contribution_id FOR SHARE;
        IF c IS NOT NULL AND st = 'published' THEN
            p := parlons_stat_weight(c, OLD.citizen_id, -1);
            PERFORM parlons_stat_add(c, {counts.format(-1)});
        END IF;
    END IF;
    c := NULL;
    IF TG_OP <> 'DELETE'{new_own} THEN
        SELECT consultation_id, status INTO c, st FROM contribution
            WHERE id = NEW.contribution_id FOR SHARE;
        IF c IS NOT NULL AND st = 'published' THEN
            p := parlons_stat_weight(c, NEW.citizen_id, 1);
            PERFORM parlons_stat_add(c, {counts.format(1)});
        END IF;
    END IF;
    RETURN NULL;
END $$
"""


PG_FUNCTIONS = [
    """
CREATE FUNCTION parlons_stat_add(c bigint, p bigint, k bigint, s bigint, v bigint, m bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF c IS NULL OR (p = 0 AND k = 0 AND s = 0 AND v = 0 AND m = 0) THEN
        RETURN;
    END IF;
    INSERT INTO stat_delta (consultation_id, participants, contributions, supports, visitors,
                            comments)
    VALUES (c, p, k, s, v, m);
END $$
""",
    """
CREATE FUNCTION parlons_stat_weight(c bigint, z bigint, d bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Add d to a participant's weight; returns the change of the participants count (-1, 0, 1).
DECLARE
    w bigint;
BEGIN
    IF c IS NULL OR z IS NULL OR d = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO stat_participant AS p (consultation_id, citizen_id, weight) VALUES (c, z, d)
    ON CONFLICT (consultation_id, citizen_id) DO UPDATE SET weight = p.weight + EXCLUDED.weight
    RETURNING p.weight INTO w;
    IF w - d <= 0 AND w > 0 THEN
        RETURN 1;
    ELSIF w - d > 0 AND w <= 0 THEN
        RETURN -1;
    END IF;
    RETURN 0;
END $$
""",
    """
CREATE FUNCTION parlons_stat_contribution(cid bigint, c bigint, author bigint, sign bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    p bigint;
    n bigint := 0;
    m bigint := 0;
BEGIN
    p := parlons_stat_weight(c, author, sign);
    FOR r IN SELECT citizen_id, count(*) AS k FROM support WHERE contribution_id = cid
             GROUP BY citizen_id ORDER BY citizen_id LOOP
        p := p + parlons_stat_weight(c, r.citizen_id, sign * r.k);
        n := n + r.k;
    END LOOP;
    FOR r IN SELECT citizen_id, count(*) AS k FROM comment
             WHERE contribution_id = cid AND status = 'published'
             GROUP BY citizen_id ORDER BY citizen_id LOOP
        p := p + parlons_stat_weight(c, r.citizen_id, sign * r.k);
        m := m + r.k;
    END LOOP;
    PERFORM parlons_stat_add(c, p, sign, sign * n, 0, sign * m);
END $$
""",
    """
CREATE FUNCTION parlons_stat_contribution_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was boolean := false;
    is_ boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        was := OLD.status = 'published';
    END IF;
    IF TG_OP <> 'DELETE' THEN
        is_ := NEW.status = 'published';
    END IF;
    IF TG_OP = 'UPDATE' AND was AND is_ THEN
        IF OLD.citizen_id = NEW.citizen_id AND OLD.consultation_id = NEW.consultation_id THEN
            RETURN NULL;
        END IF;
    END IF;
    IF was THEN
        PERFORM parlons_stat_contribution(OLD.id, OLD.consultation_id, OLD.citizen_id, -1);
    END IF;
    IF is_ THEN
        PERFORM parlons_stat_contribution(NEW.id, NEW.consultation_id, NEW.citizen_id, 1);
    END IF;
    RETURN NULL;
END $$
""",
    _child_function("support"),
    _child_function("comment"),
    """
CREATE FUNCTION parlons_stat_visit_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM parlons_stat_add(OLD.consultation_id, 0, 0, 0, -1, 0);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM parlons_stat_add(NEW.consultation_id, 0, 0, 0, 1, 0);
    END IF;
    RETURN NULL;
END $$
""",
]

PG_TRIGGERS = [
    "CREATE TRIGGER stat_contribution AFTER INSERT OR DELETE OR UPDATE OF status, citizen_id, "
    "consultation_id ON contribution FOR EACH ROW "
    "EXECUTE FUNCTION parlons_stat_contribution_trg()",
    "CREATE TRIGGER stat_support AFTER INSERT OR DELETE OR UPDATE OF citizen_id, contribution_id "
    "ON support FOR EACH ROW EXECUTE FUNCTION parlons_stat_support_trg()",
    "CREATE TRIGGER stat_comment AFTER INSERT OR DELETE OR UPDATE OF status, citizen_id, "
    "contribution_id ON comment FOR EACH ROW EXECUTE FUNCTION parlons_stat_comment_trg()",
    "CREATE TRIGGER stat_visit AFTER INSERT OR DELETE OR UPDATE OF consultation_id ON visit "
    "FOR EACH ROW EXECUTE FUNCTION parlons_stat_visit_trg()",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS stat_contribution ON contribution",
    "DROP TRIGGER IF EXISTS stat_support ON support",
    "DROP TRIGGER IF EXISTS stat_comment ON comment",
    "DROP TRIGGER IF EXISTS stat_visit ON visit",
    "DROP FUNCTION IF EXISTS parlons_stat_contribution_trg()",
    "DROP FUNCTION IF EXISTS parlons_stat_support_trg()",
    "DROP FUNCTION IF EXISTS parlons_stat_comment_trg()",
    "DROP FUNCTION IF EXISTS parlons_stat_visit_trg()",
    "DROP FUNCTION IF EXISTS parlons_stat_contribution(bigint, bigint, bigint, bigint)",
    "DROP FUNCTION IF EXISTS parlons_stat_weight(bigint, bigint, bigint)",
    "DROP FUNCTION IF EXISTS parlons_stat_add(bigint, bigint, bigint, bigint, bigint, bigint)",
]


def _raw(sql: str) -> None:
    # Straight to the driver: trigger bodies are not SQLAlchemy text (no bind parameters).
    op.get_bind().exec_driver_sql(sql)


def _counts() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS]


def upgrade() -> None:
    op.create_table(
        "stat_counter",
        sa.Column("consultation_id", sa.Integer(), autoincrement=False, nullable=False),
        *_counts(),
        sa.PrimaryKeyConstraint("consultation_id", name=op.f("pk_stat_counter")),
    )
    op.create_table(
        "stat_delta",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        *_counts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stat_delta")),
    )
    with op.batch_alter_table("stat_delta", schema=None) as batch_op:
        batch_op.create_index("ix_stat_delta_consultation", ["consultation_id"], unique=False)
    op.create_table(
        "stat_participant",
        sa.Column("consultation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("citizen_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("weight", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consultation_id", "citizen_id", name=op.f("pk_stat_participant")),
    )
    _raw(WEIGHTS)
    _raw(TOTALS)
    if op.get_bind().dialect.name == "sqlite":
        for sql in _sqlite_triggers():
            _raw(sql)
    else:
        for sql in PG_FUNCTIONS + PG_TRIGGERS:
            _raw(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            _raw(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for sql in PG_DROP:
            _raw(sql)
    op.drop_table("stat_participant")
    with op.batch_alter_table("stat_delta", schema=None) as batch_op:
        batch_op.drop_index("ix_stat_delta_consultation")
    op.drop_table("stat_delta")
    op.drop_table("stat_counter")
