"""Opinion groups at scale: 10,000 participants, 5,000 ideas, 500,000 votes (issue 15).

Two measurements, each against a baseline measured in the same run on the same data:

1. the computation alone (``bot.opinions.compute_groups``: PCA, k-means for k = 2..5 chosen by
   silhouette, per-group shares) on a planted matrix (4 camps, 15 % noise) against building the
   sparse matrix alone;
2. end to end on SQLite (``bot.answers.compute_for``, what the scheduler's worker runs: read the
   votes and their fingerprint, compute, store the result) against the bare driver reading the
   same votes.

    .venv/bin/python bench/opinions.py [--participants 10000] [--ideas 5000] [--votes 500000]
        [--no-db]

Goal: groups computed in ≤ 10 s. The last line sums it up.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bot.answers import compute_for  # noqa: E402
from bot.opinions import Votes, compute_groups  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.repositories import Repos  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CAMPS = 4


def planted(participants: int, ideas: int, votes: int, seed: int = 1) -> Votes:
    rng = np.random.default_rng(seed)
    camp = rng.integers(0, CAMPS, participants)
    rows = rng.integers(0, participants, votes * 11 // 10)
    cols = rng.integers(0, ideas, votes * 11 // 10)
    _, first = np.unique(rows * ideas + cols, return_index=True)
    first = np.sort(first)[:votes]
    rows, cols = rows[first], cols[first]
    agree = (cols % CAMPS) == camp[rows]
    noise = rng.random(len(rows)) < 0.15
    values = np.where(agree ^ noise, 1, -1)
    return Votes(participants, tuple(range(1, ideas + 1)), rows, cols, values)


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def load(url: str, path: Path, votes: Votes) -> None:
    """The votes as rows of the real schema (citizens, one question, ideas, supports and
    disagreements), bulk-loaded through the bare driver."""
    db = Database(url)
    db.upgrade()
    db.dispose()
    con = sqlite3.connect(path)
    now = NOW.isoformat()
    con.execute(
        "INSERT INTO consultation (id, slug, status, opens_at, closes_at, timezone, document, "
        "revision, created_at, updated_at) "
        "VALUES (1, 'bench', 'open', ?, ?, 'UTC', '{}', 1, ?, ?)",
        (now, now, now, now),
    )
    con.execute("INSERT INTO question (id, consultation_id, key, position) VALUES (1, 1, 'q', 1)")
    con.executemany(
        "INSERT INTO citizen (id, platform, platform_user_id, pseudonym, reachable, created_at, "
        "last_seen_at) VALUES (?, 'bench', ?, ?, 1, ?, ?)",
        ((n, str(n), f"p{n}", now, now) for n in range(1, votes.participants + 2)),
    )
    author = votes.participants + 1
    con.executemany(
        "INSERT INTO contribution (id, consultation_id, question_id, citizen_id, text, status, "
        "created_at, updated_at) VALUES (?, 1, 1, ?, ?, 'published', ?, ?)",
        ((i, author, f"idea {i}", now, now) for i in votes.ideas),
    )
    ideas = np.asarray(votes.ideas)
    for table, sign in (("support", 1), ("disagreement", -1)):
        mask = votes.values == sign
        con.executemany(
            f"INSERT INTO {table} (contribution_id, citizen_id, created_at) VALUES (?, ?, ?)",
            (
                (int(ideas[c]), int(r) + 1, now)
                for r, c in zip(votes.rows[mask], votes.cols[mask], strict=True)
            ),
        )
    con.commit()
    con.close()


def raw_read(path: Path) -> int:
    con = sqlite3.connect(path)
    n = 0
    for query in (
        "SELECT s.citizen_id, s.contribution_id FROM support s JOIN contribution c "
        "ON c.id = s.contribution_id WHERE c.consultation_id = 1 AND c.status = 'published'",
        "SELECT d.citizen_id, d.contribution_id FROM disagreement d JOIN contribution c "
        "ON c.id = d.contribution_id WHERE c.consultation_id = 1 AND c.status = 'published'",
    ):
        n += len(con.execute(query).fetchall())
    con.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--ideas", type=int, default=5_000)
    parser.add_argument("--votes", type=int, default=500_000)
    parser.add_argument("--no-db", action="store_true")
    args = parser.parse_args()
    # scikit-learn is imported once per process (by the first computation): not measured.
    compute_groups(planted(200, 50, 3000), seed=0, min_votes=3)

    votes = planted(args.participants, args.ideas, args.votes)
    base, _m = timed(votes.matrix)
    took, groups = timed(lambda: compute_groups(votes, seed=15, min_votes=5))
    sizes = [g.size for g in groups.groups]
    print(
        f"computation: {len(votes.values):,} votes, {took:.2f} s; sparse matrix alone "
        f"{base * 1000:.0f} ms (x{took / base:.0f}); groups {sizes}, consensus "
        f"{len(groups.consensus)}, divisive {len(groups.divisive)}"
    )
    extra = ""
    if not args.no_db:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.sqlite"
            url = f"sqlite:///{path}"
            load_s, _ = timed(lambda: load(url, path, votes))
            raw_s, n = timed(lambda: raw_read(path))
            settings = Settings(database_url=url)
            db = Database(url)
            e2e_s, db_groups = timed(lambda: compute_for(db, 1, settings, NOW))
            with db.session() as session:
                # What /groups runs inside the event: the votes' fingerprint (then the cache).
                fp_s, _fp = timed(lambda: Repos(db, session).answers.fingerprint(1, 15, 5))
            print(f"/groups' fingerprint of the votes (inside the event): {fp_s * 1000:.0f} ms")
            db.dispose()
            print(
                f"end to end (SQLite): read + compute + store {e2e_s:.2f} s; bare driver "
                f"reading the {n:,} votes {raw_s:.2f} s (x{e2e_s / raw_s:.1f}); loaded in "
                f"{load_s:.0f} s; groups {[g.size for g in db_groups.groups]}"
            )
            extra = f", end to end on SQLite {e2e_s:.2f} s (x{e2e_s / raw_s:.1f} a bare read)"
    ok = "OK" if took <= 10 else "OVER"
    print(
        f"opinion groups: {args.participants:,} participants x {args.ideas:,} ideas, "
        f"{len(votes.values):,} votes: {took:.2f} s {ok} (goal 10 s; x{took / base:.0f} "
        f"building the sparse matrix){extra}"
    )


if __name__ == "__main__":
    main()
