"""/stats at scale: the statistics read from the counters the triggers keep, against a full
recount of the same figures measured in the same run (1,000,000 supports by default).

The data is loaded in bulk before migration 0011 (which counts what is there once), then the
schema is brought to head; both reads must give the same figures.

    .venv/bin/python bench/counters.py [--supports 1000000] [--pg ADMIN_URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bot.app import build_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.repositories import Repos  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"


def load(url: str, supports: int) -> None:
    contributions = max(1, supports // 50)
    citizens = max(100, supports // 10)
    app = build_app(Settings(database_url=url, log_level="WARNING"), migrate=False)
    app.db.upgrade("0010_legible")
    app.import_consultation(SEED)
    sqlite = app.db.is_sqlite
    series = (
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) "
        "SELECT n FROM s"
        if sqlite
        else "SELECT generate_series(1, {n}) AS n"
    )
    now = "'2019-08-19 08:00:00.000000'" if sqlite else "now()"
    with app.db.engine.begin() as conn:
        q = conn.execute(text("SELECT id FROM question ORDER BY position LIMIT 1")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO citizen (platform, platform_user_id, pseudonym, reachable, "
                f"created_at, last_seen_at) SELECT 'bench', 'u' || n, 'p' || n, true, {now}, "
                f"{now} FROM ({series.format(n=citizens)}) AS x"
            )
        )
        conn.execute(
            text(
                "INSERT INTO contribution (consultation_id, question_id, citizen_id, text, "
                f"status, created_at, updated_at) SELECT 1, {q}, n, 'idée ' || n, "
                f"CASE WHEN n % 10 = 0 THEN 'hidden' ELSE 'published' END, {now}, {now} "
                f"FROM ({series.format(n=contributions)}) AS x"
            )
        )
        # Support n: by citizen (n mod Z) + 1 on contribution ((n div Z) mod C) + 1: unique
        # pairs while supports <= C × Z.
        conn.execute(
            text(
                "INSERT INTO support (contribution_id, citizen_id, created_at) "
                f"SELECT ((n / {citizens}) % {contributions}) + 1, (n % {citizens}) + 1, "
                f"{now} FROM ({series.format(n=supports)}) AS x"
            )
        )
        conn.execute(
            text(
                "INSERT INTO visit (consultation_id, citizen_id, created_at) "
                f"SELECT 1, n, {now} FROM ({series.format(n=citizens)}) AS x"
            )
        )
    app.db.upgrade()  # 0011_counters counts what is there
    app.close()


def measure(url: str, runs: int) -> tuple[float, float, bool]:
    app = build_app(Settings(database_url=url, log_level="WARNING"), migrate=False)
    with app.db.session() as s:
        Repos(app.db, s).stats.fold_counters()
    times = []
    for _ in range(runs):
        with app.db.session() as s:
            started = time.perf_counter()
            fast = Repos(app.db, s).stats.counters(1)
            times.append(time.perf_counter() - started)
    with app.db.session() as s:
        started = time.perf_counter()
        slow = Repos(app.db, s).stats.recount(1)
        recount = time.perf_counter() - started
    app.close()
    print(f"  counters: {fast}")
    print(f"  recount:  {slow}")
    return statistics.median(times), recount, fast == slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supports", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'counters.sqlite3'}"
        load(url, args.supports)
        results.append(("SQLite", *measure(url, args.runs)))
    if not args.no_pg:
        import psycopg

        name = f"parlons_bench_c_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        try:
            url = f"{args.pg.rsplit('/', 1)[0]}/{name}"
            load(url, args.supports)
            results.append(("PostgreSQL", *measure(url, args.runs)))
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    print(
        f"/stats at {args.supports:,} supports: "
        + " | ".join(
            f"{db} counters {fast * 1000:.2f} ms vs recount {slow * 1000:.0f} ms "
            f"({slow / fast:.0f}×, {'same figures' if same else 'FIGURES DIFFER'})"
            for db, fast, slow, same in results
        )
    )


if __name__ == "__main__":
    main()
