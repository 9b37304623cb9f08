"""Closing results at scale: 1,000,000 supports on 20,000 contributions by 300,000 citizens.

Times ``BroadcastService.compute_results`` (what the scheduler runs at the closing: the five
statistics, every contribution ranked per question with its support and comment counts, the
participants' pseudonyms for the export) against, in the same run on the same data, the raw
``GROUP BY`` that counts supports per contribution (through the bare driver), and the raw SQL
of every figure the results hold. On SQLite and on PostgreSQL; data bulk-loaded with raw
inserts (``executemany`` on SQLite, ``COPY`` on PostgreSQL).

    .venv/bin/python bench/results.py [--supports 1000000] [--contributions 20000]
        [--citizens 300000] [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--no-pg]

Goals: results in ≤ 1 s and ≤ 2× the raw GROUP BY.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bot.app import App, build_app  # noqa: E402
from bot.broadcasts import BroadcastService  # noqa: E402
from bot.services import Services  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.repositories import Repos  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"
NOW = datetime(2019, 8, 31, 0, 0, tzinfo=UTC)

RAW_GROUP_BY = "SELECT contribution_id, count(*) FROM support GROUP BY contribution_id"
RAW_ALL = [
    # every figure of the results, in bare SQL (the baseline of the whole computation)
    "SELECT c.id, q.key, z.pseudonym, c.text, c.created_at, "
    "coalesce(s.n, 0), coalesce(m.n, 0) FROM contribution c "
    "JOIN question q ON q.id = c.question_id JOIN citizen z ON z.id = c.citizen_id "
    "LEFT JOIN (SELECT contribution_id AS k, count(*) AS n FROM support "
    "GROUP BY contribution_id) s ON s.k = c.id "
    "LEFT JOIN (SELECT contribution_id AS k, count(*) AS n FROM comment "
    "WHERE status = 'published' GROUP BY contribution_id) m ON m.k = c.id "
    "WHERE c.consultation_id = 1 AND c.status = 'published'",
    "SELECT pseudonym FROM citizen WHERE id IN ("
    "SELECT citizen_id FROM contribution WHERE consultation_id = 1 AND status = 'published' "
    "UNION SELECT s.citizen_id FROM support s JOIN contribution c ON c.id = s.contribution_id "
    "WHERE c.consultation_id = 1 AND c.status = 'published' "
    "UNION SELECT m.citizen_id FROM comment m JOIN contribution c ON c.id = m.contribution_id "
    "WHERE c.consultation_id = 1 AND c.status = 'published' AND m.status = 'published')",
    "SELECT count(*) FROM visit WHERE consultation_id = 1",
]


def generate(
    citizens: int, contributions: int, supports: int, seed: int = 7
) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    t0 = NOW - timedelta(days=500)
    people = [
        (i, "bench", f"u{i}", secrets.token_hex(8), True, t0, t0) for i in range(1, citizens + 1)
    ]
    ideas = []
    for i in range(1, contributions + 1):
        created = t0 + timedelta(minutes=i)
        text = f"Idée {i} : " + " ".join(
            rng.choice(("jardin", "banc", "vélo", "budget", "école", "=SUM(1)")) for _ in range(12)
        )
        ideas.append(
            (i, 1, 1 + i % 2, rng.randint(1, citizens), text, "published", created, created)
        )
    # Popularity follows a long tail: a few ideas get most supports.
    weights = [1 / (rank**0.8) for rank in range(1, contributions + 1)]
    pairs: set[tuple[int, int]] = set()
    targets = rng.choices(range(1, contributions + 1), weights=weights, k=supports * 2)
    it = iter(targets)
    while len(pairs) < supports:
        pairs.add((next(it), rng.randint(1, citizens)))
    support_rows = [(n, k, c, t0) for n, (k, c) in enumerate(pairs, 1)]
    comments = [
        (n, rng.randint(1, contributions), rng.randint(1, citizens), "Bonne idée", "published", t0)
        for n in range(1, contributions * 3 + 1)
    ]
    visits = [(i, 1, i, None, t0) for i in range(1, citizens + 1)]
    return {
        "citizen": people,
        "contribution": ideas,
        "support": support_rows,
        "comment": comments,
        "visit": visits,
    }


COLUMNS = {
    "citizen": "id, platform, platform_user_id, pseudonym, reachable, created_at, last_seen_at",
    "contribution": "id, consultation_id, question_id, citizen_id, text, status, created_at, updated_at",  # noqa: E501
    "support": "id, contribution_id, citizen_id, created_at",
    "comment": "id, contribution_id, citizen_id, text, status, created_at",
    "visit": "id, consultation_id, citizen_id, source, created_at",
}


def load_sqlite(path: Path, data: dict[str, list[tuple[Any, ...]]]) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for table, rows in data.items():
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", (
            tuple(v.isoformat(sep=" ").replace("+00:00", "") if isinstance(v, datetime) else v for v in row)  # noqa: E501
            for row in rows
        ))  # fmt: skip
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def load_pg(url: str, data: dict[str, list[tuple[Any, ...]]]) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        for table, rows in data.items():
            with conn.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        for table in data:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def best_of(n: int, fn: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def raw_runner(app: App, queries: list[str]) -> Callable[[], object]:
    def run() -> object:
        raw = app.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            out = []
            for q in queries:
                cur.execute(q)
                out.append(cur.fetchall())
            return out
        finally:
            raw.close()

    return run


def results_runner(app: App) -> Callable[[], object]:
    def run() -> object:
        with app.db.session() as session:
            repos = Repos(app.db, session)
            info = Services(repos, NOW).consultations.get(1)
            return BroadcastService(repos, NOW).compute_results(info)

    return run


def measure(name: str, app: App, repeat: int) -> None:
    results = results_runner(app)()
    s = results.statistics  # type: ignore[attr-defined]
    print(
        f"  figures: {s.contributions:,} contributions, {s.supports:,} supports, "
        f"{s.comments:,} comments, {s.participants:,} participants, {s.visitors:,} visitors"
    )
    group_by, _ = best_of(repeat, raw_runner(app, [RAW_GROUP_BY]))
    raw_all, _ = best_of(repeat, raw_runner(app, RAW_ALL))
    ours, ours_median = best_of(repeat, results_runner(app))
    export, _ = best_of(repeat, lambda: (results.to_csv(), results.to_json()))  # type: ignore[attr-defined]
    verdict = "OK" if ours <= 1.0 and ours <= 2 * group_by else "BELOW GOAL"
    print(f"  raw GROUP BY (supports per contribution): {group_by * 1000:7.0f} ms")
    print(f"  raw SQL of every figure of the results:   {raw_all * 1000:7.0f} ms")
    print(
        f"  compute_results:                           {ours * 1000:7.0f} ms "
        f"(median {ours_median * 1000:.0f} ms) = {ours / group_by:.2f}× the GROUP BY, "
        f"{ours / raw_all:.2f}× the raw SQL of the same figures"
    )
    print(f"  CSV + JSON export of them:                 {export * 1000:7.0f} ms")
    print(
        f"  {name}: {ours:.2f} s (goal ≤ 1 s), {ours / group_by:.2f}× raw GROUP BY "
        f"(goal ≤ 2), {ours / raw_all:.2f}× raw SQL of the same figures → {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supports", type=int, default=1_000_000)
    parser.add_argument("--contributions", type=int, default=20_000)
    parser.add_argument("--citizens", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    data = generate(args.citizens, args.contributions, args.supports)
    print(
        f"generated {args.citizens:,} citizens, {args.contributions:,} contributions, "
        f"{args.supports:,} supports, {len(data['comment']):,} comments in "
        f"{time.perf_counter() - started:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="parlons-bench-") as tmp:
        path = Path(tmp) / "results.sqlite3"
        app = build_app(Settings(database_url=f"sqlite:///{path}"), clock=lambda: NOW)
        app.import_consultation(SEED)
        started = time.perf_counter()
        load_sqlite(path, data)
        print(f"SQLite (loaded in {time.perf_counter() - started:.1f} s)")
        measure("SQLite", app, args.repeat)
        app.close()
    if args.no_pg:
        return
    import psycopg

    name = f"parlons_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.pg.rsplit('/', 1)[0]}/{name}"
    try:
        app = build_app(Settings(database_url=url), clock=lambda: NOW)
        app.import_consultation(SEED)
        started = time.perf_counter()
        load_pg(url, data)
        print(f"PostgreSQL (loaded in {time.perf_counter() - started:.1f} s)")
        measure("PostgreSQL", app, args.repeat)
        app.close()
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
