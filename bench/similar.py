"""Similar ideas (issue 15): precision on a labelled set of near-duplicates, and the lookup's
p99 latency at 5,000 ideas, against a naive baseline measured in the same run.

    .venv/bin/python bench/similar.py [--ideas 5000] [--lookups 300]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

The labelled set (bench/data/near_duplicates.json, French and English) holds published ideas
and, for each, a draft saying nearly the same thing in other words, plus drafts with no
duplicate. ``hit@3`` is the share of drafts whose duplicate is among the three ideas the
preview shows (what the issue calls precision at 3: one labelled duplicate per draft);
``p@1`` the share where it comes first; ``false`` the share of unrelated drafts for which
anything is shown. They are measured with the labelled ideas alone, then among
``--ideas`` ideas (the rest: sentences recombined from the set's own words, so that they share
vocabulary with the drafts). The latency is that of ``LegibleRepo.similar`` in its own
transaction (as in the preview), at ``--ideas`` ideas in one question; the baseline is a
naive LIKE scan (every idea containing one of the draft's words, ranked by the same rule).
The last line prints the figures and their ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, or_, select  # noqa: E402
from sqlmodel import col  # noqa: E402

from bot.app import build_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage import text_index  # noqa: E402
from storage.models import Citizen, Contribution  # noqa: E402
from storage.repositories import Repos  # noqa: E402
from storage.repositories_legible import rank_similar  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"
DATA = ROOT / "bench" / "data" / "near_duplicates.json"
NOW = datetime.fromisoformat("2019-08-19T10:00:00+02:00")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class Bench:
    def __init__(self, url: str) -> None:
        self.app = build_app(Settings(database_url=url), clock=lambda: NOW)
        self.app.import_consultation(SEED)
        self.db = self.app.engine.db
        with self.db.session() as s:
            repos = Repos(self.db, s)
            info = repos.consultations.all()[0]
            assert info.id is not None
            self.consultation = info.id
            self.question = repos.consultations.questions(info.id)[0].id
            self.citizen = s.execute(
                insert(Citizen)
                .values(
                    platform="bench",
                    platform_user_id="author",
                    pseudonym="bench-author",
                    reachable=True,
                    created_at=NOW,
                    last_seen_at=NOW,
                )
                .returning(col(Citizen.id))
            ).scalar_one()

    def publish(self, texts: list[str]) -> list[int]:
        with self.db.session() as s:
            rows = [
                {
                    "consultation_id": self.consultation,
                    "question_id": self.question,
                    "citizen_id": self.citizen,
                    "text": t,
                    "status": "published",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for t in texts
            ]
            ids: list[int] = []
            for start in range(0, len(rows), 500):
                ids += list(
                    s.execute(
                        insert(Contribution)
                        .values(rows[start : start + 500])
                        .returning(col(Contribution.id))
                    ).scalars()
                )
            return ids

    def similar(self, draft: str) -> list[int]:
        with self.db.session() as s:
            return Repos(self.db, s).legible.similar(self.consultation, self.question, draft)

    def like_scan(self, draft: str) -> list[int]:
        """The naive baseline: every idea of the question containing one of the draft's
        words, ranked in Python by the same rule."""
        words = text_index.query_words(draft)
        if not words:
            return []
        with self.db.session() as s:
            rows = s.execute(
                select(col(Contribution.id), col(Contribution.text)).where(
                    col(Contribution.question_id) == self.question,
                    col(Contribution.status) == "published",
                    or_(*(col(Contribution.text).ilike(f"%{w}%") for w in words)),
                )
            ).all()
        return rank_similar(draft, [(int(i), t) for i, t in rows])[:3]

    def close(self) -> None:
        self.app.close()


def quality(
    lookup: Any, pairs: list[dict], ids: list[int], unrelated: list[dict]
) -> dict[str, float]:
    hits = firsts = 0
    for pair, idea_id in zip(pairs, ids, strict=True):
        shown = lookup(pair["draft"])
        hits += idea_id in shown
        firsts += bool(shown) and shown[0] == idea_id
    false = sum(1 for u in unrelated if lookup(u["draft"]))
    return {
        "hit@3": hits / len(pairs),
        "p@1": firsts / len(pairs),
        "false": false / max(1, len(unrelated)),
    }


def filler(data: dict, count: int, rng: random.Random) -> list[str]:
    vocabulary = sorted(
        {w for p in data["pairs"] for w in (p["idea"] + " " + p["draft"]).split() if len(w) > 2}
    )
    return [" ".join(rng.sample(vocabulary, rng.randint(6, 12))) for _ in range(count)]


def run(name: str, url: str, data: dict, ideas: int, lookups: int) -> dict[str, float]:
    rng = random.Random(15)
    bench = Bench(url)
    try:
        pairs, unrelated = data["pairs"], data["unrelated"]
        ids = bench.publish([p["idea"] for p in pairs])
        alone = quality(bench.similar, pairs, ids, unrelated)
        bench.publish(filler(data, max(0, ideas - len(pairs)), rng))
        bench.similar("warm up")  # SQLite: the first read indexes the new ideas
        crowded = quality(bench.similar, pairs, ids, unrelated)
        baseline = quality(bench.like_scan, pairs, ids, unrelated)
        drafts = [p["draft"] for p in pairs] + [u["draft"] for u in unrelated]
        ours: list[float] = []
        naive: list[float] = []
        for n in range(lookups):
            draft = drafts[n % len(drafts)]
            for lookup, samples in ((bench.similar, ours), (bench.like_scan, naive)):
                start = time.perf_counter()
                lookup(draft)
                samples.append((time.perf_counter() - start) * 1000)
        result = {
            "hit3_alone": alone["hit@3"],
            "p1_alone": alone["p@1"],
            "false_alone": alone["false"],
            "hit3": crowded["hit@3"],
            "p1": crowded["p@1"],
            "false": crowded["false"],
            "like_hit3": baseline["hit@3"],
            "p99": p99(ours),
            "median": statistics.median(ours),
            "like_p99": p99(naive),
        }
        print(
            f"{name}: {len(pairs)} labelled pairs; alone hit@3 {alone['hit@3']:.2f} "
            f"p@1 {alone['p@1']:.2f} false {alone['false']:.2f}; among {ideas} ideas "
            f"hit@3 {crowded['hit@3']:.2f} p@1 {crowded['p@1']:.2f} false "
            f"{crowded['false']:.2f} (LIKE scan hit@3 {baseline['hit@3']:.2f}); lookup "
            f"median {result['median']:.1f} ms p99 {result['p99']:.1f} ms, LIKE scan p99 "
            f"{result['like_p99']:.1f} ms",
            flush=True,
        )
        return result
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ideas", type=int, default=5000)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--pg", default=None, help="also run on a fresh PostgreSQL database")
    args = parser.parse_args()
    data = json.loads(DATA.read_text(encoding="utf-8"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(
            "sqlite", f"sqlite:///{tmp}/similar.sqlite3", data, args.ideas, args.lookups
        )
    if args.pg:
        name = f"parlons_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.pg.rsplit("/", 1)[0]
            results["postgresql"] = run(
                "postgresql", f"{base}/{name}", data, args.ideas, args.lookups
            )
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        "similar ideas: "
        + "; ".join(
            f"{db} hit@3 {r['hit3']:.2f} (alone {r['hit3_alone']:.2f}, LIKE "
            f"{r['like_hit3']:.2f}) p@1 {r['p1']:.2f} false {r['false']:.2f}, p99 "
            f"{r['p99']:.1f} ms at {args.ideas} ideas (target <= 50), LIKE scan p99 "
            f"{r['like_p99']:.1f} ms, ratio {r['p99'] / r['like_p99']:.2f}"
            for db, r in results.items()
        )
    )


if __name__ == "__main__":
    main()
