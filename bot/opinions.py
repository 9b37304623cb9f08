"""Opinion groups (Pol.is-style), pure computation: no SQL, no I/O.

The input is the participant × idea vote matrix (+1 support, −1 disagreement, 0 unseen or
passed) in a canonical order (participants by their anonymous index, ideas by id): the database
reader (storage.repositories_answers) and the open data export (bot.exports) give the same
``Votes``, so anyone can recompute the published groups from the export
(``groups_from_export``).

1. Participants with fewer than ``min_votes`` votes are left out (too little to place them).
2. PCA to 2 dimensions (scikit-learn, sparse input, ARPACK, fixed seed).
3. k-means for k = 2..5 (fixed seed), k chosen by the silhouette score (on a seeded sample of
   at most ``SILHOUETTE_SAMPLE`` points, so it stays linear in the participants).
4. Per group, per idea: the share of the group's votes on it that are supports (Laplace
   smoothed: (agree + 1) / (votes + 2)). *Defining* ideas: supported by the group much more than
   by the other participants; *consensus* ideas: supported by a majority of every group;
   *divisive* ideas: the widest gap between the groups' support.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

MAX_GROUPS = 5
SILHOUETTE_SAMPLE = 1500
SHOWN = 5  # defining / consensus / divisive ideas kept per list
MIN_GROUP_VOTES = 2  # votes of a group on an idea before its share means anything
DEFINING_RATIO = 1.5  # the group supports it at least this many times more than the others
CONSENSUS_SHARE = 0.6  # every group supports it at least this much
DIVISIVE_GAP = 0.3


@dataclass(frozen=True)
class Votes:
    """The vote matrix in canonical order: rows are participants 0..n-1 (anonymous), columns
    the ideas ``ideas`` (ascending ids); entries (row, column index, ±1)."""

    participants: int
    ideas: tuple[int, ...]
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @classmethod
    def from_triples(cls, triples: Iterable[tuple[int, int, int]]) -> Votes:
        """From (participant index, idea id, ±1) triples (the export's matrix)."""
        data = np.array(list(triples), dtype=np.int64).reshape(-1, 3)
        ideas = np.unique(data[:, 1]) if len(data) else np.zeros(0, dtype=np.int64)
        participants = int(data[:, 0].max()) + 1 if len(data) else 0
        return cls(
            participants,
            tuple(int(x) for x in ideas),
            data[:, 0],
            np.searchsorted(ideas, data[:, 1]),
            data[:, 2],
        )

    def matrix(self) -> sparse.csr_matrix:
        return sparse.csr_matrix(
            (self.values.astype(np.float64), (self.rows, self.cols)),
            shape=(self.participants, len(self.ideas)),
        )

    def triples(self) -> list[list[int]]:
        """(participant index, idea id, ±1), sorted: the export's form."""
        ideas = np.asarray(self.ideas, dtype=np.int64)
        order = np.lexsort((ideas[self.cols], self.rows))
        return [
            [int(r), int(ideas[c]), int(v)]
            for r, c, v in zip(self.rows[order], self.cols[order], self.values[order], strict=True)
        ]


def anonymous_order(citizen_ids: Sequence[int], seed: int) -> list[int]:
    """The citizens sorted by a seeded hash of their id: the row order of the matrix, which
    tells nothing about who joined first and links to no pseudonym of the export."""

    def key(cid: int) -> bytes:
        return hashlib.sha256(f"{seed}:{cid}".encode()).digest()

    return sorted(citizen_ids, key=key)


@dataclass(frozen=True)
class IdeaShare:
    idea: int
    share: float  # the group's (or the lowest group's) support share
    others: float  # the other participants' share (defining); the highest group's (divisive)

    def to_json(self) -> list[Any]:
        return [self.idea, round(self.share, 4), round(self.others, 4)]


@dataclass(frozen=True)
class Group:
    size: int
    defining: tuple[IdeaShare, ...]


@dataclass(frozen=True)
class Groups:
    seed: int
    min_votes: int
    participants: int  # placed in a group (enough votes)
    left_out: int  # fewer than min_votes votes
    silhouette: float | None
    groups: tuple[Group, ...]
    consensus: tuple[IdeaShare, ...]
    divisive: tuple[IdeaShare, ...]

    def to_json_data(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "min_votes": self.min_votes,
            "participants": self.participants,
            "left_out": self.left_out,
            "silhouette": None if self.silhouette is None else round(self.silhouette, 4),
            "groups": [
                {"size": g.size, "defining": [d.to_json() for d in g.defining]}
                for g in self.groups
            ],
            "consensus": [c.to_json() for c in self.consensus],
            "divisive": [d.to_json() for d in self.divisive],
        }

    @classmethod
    def from_json_data(cls, data: dict[str, Any]) -> Groups:
        def shares(items: list[list[Any]]) -> tuple[IdeaShare, ...]:
            return tuple(IdeaShare(int(a), float(b), float(c)) for a, b, c in items)

        return cls(
            seed=int(data["seed"]),
            min_votes=int(data["min_votes"]),
            participants=int(data["participants"]),
            left_out=int(data["left_out"]),
            silhouette=data.get("silhouette"),
            groups=tuple(
                Group(int(g["size"]), shares(g["defining"])) for g in data.get("groups", [])
            ),
            consensus=shares(data.get("consensus", [])),
            divisive=shares(data.get("divisive", [])),
        )


def compute_groups(votes: Votes, *, seed: int, min_votes: int) -> Groups:
    """The opinion groups of a vote matrix (deterministic for a given matrix and seed)."""
    from threadpoolctl import threadpool_limits

    # One thread: on a shared machine OpenMP's spinning threads cost more than they give (and
    # the bot's other work keeps the other core).
    with threadpool_limits(limits=1):
        return _compute(votes, seed=seed, min_votes=min_votes)


def _compute(votes: Votes, *, seed: int, min_votes: int) -> Groups:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    matrix = votes.matrix()
    counts = np.diff(matrix.indptr)
    keep = np.flatnonzero(counts >= max(1, min_votes))
    left_out = votes.participants - len(keep)
    empty = Groups(seed, min_votes, 0, votes.participants, None, (), (), ())
    if len(keep) < 2 * 2 or len(votes.ideas) < 2:
        return empty
    m = matrix[keep]
    # Ideas nobody kept voted on carry nothing.
    used = np.flatnonzero(np.diff(m.tocsc().indptr) > 0)
    m = m[:, used]
    ideas = np.asarray(votes.ideas, dtype=np.int64)[used]
    if m.shape[1] < 2:
        return empty
    points = PCA(n_components=2, svd_solver="arpack", random_state=seed).fit_transform(m)
    if np.allclose(points, points[0]):
        return empty  # everyone voted alike: there are no groups to tell apart
    # k is chosen on a seeded sample (k-means and silhouette stay cheap at any size); the
    # chosen model then places every participant.
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.permutation(len(keep))[: min(SILHOUETTE_SAMPLE, len(keep))])
    best: tuple[float, Any] | None = None
    distinct = len(np.unique(points[sample].round(9), axis=0))
    for k in range(2, min(MAX_GROUPS, distinct, len(sample) - 1) + 1):
        model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(points[sample])
        if len(np.unique(model.labels_)) < 2:
            continue
        score = float(silhouette_score(points[sample], model.labels_))
        if best is None or score > best[0] + 1e-9:
            best = (score, model)
    if best is None:
        return empty
    score, model = best
    labels = model.predict(points)
    # Groups in a stable order: largest first, then by their first member.
    sizes = np.bincount(labels)
    first = np.array([np.flatnonzero(labels == g)[0] for g in range(len(sizes))])
    order = sorted(range(len(sizes)), key=lambda g: (-sizes[g], first[g]))
    relabel = np.empty(len(sizes), dtype=np.int64)
    relabel[order] = np.arange(len(sizes))
    labels = relabel[labels]
    k = len(sizes)
    member = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    agree = np.asarray((member @ (m > 0).astype(np.float64)).todense())
    seen = np.asarray((member @ (m != 0).astype(np.float64)).todense())
    share = (agree + 1) / (seen + 2)
    total_agree, total_seen = agree.sum(axis=0), seen.sum(axis=0)
    groups = []
    for g in range(k):
        others = (total_agree - agree[g] + 1) / (total_seen - seen[g] + 2)
        ratio = share[g] / others
        ok = (seen[g] >= MIN_GROUP_VOTES) & (share[g] > 0.5) & (ratio >= DEFINING_RATIO)
        picked = _top(np.flatnonzero(ok), -ratio, ideas)
        groups.append(
            Group(
                int((labels == g).sum()),
                tuple(IdeaShare(int(ideas[j]), share[g, j], others[j]) for j in picked),
            )
        )
    voted = (seen >= MIN_GROUP_VOTES).all(axis=0)
    low, high = share.min(axis=0), share.max(axis=0)
    consensus = _top(np.flatnonzero(voted & (low >= CONSENSUS_SHARE)), -low, ideas)
    divisive = _top(np.flatnonzero(voted & (high - low >= DIVISIVE_GAP)), low - high, ideas)
    return Groups(
        seed=seed,
        min_votes=min_votes,
        participants=len(keep),
        left_out=left_out,
        silhouette=score,
        groups=tuple(groups),
        consensus=tuple(IdeaShare(int(ideas[j]), low[j], high[j]) for j in consensus),
        divisive=tuple(IdeaShare(int(ideas[j]), low[j], high[j]) for j in divisive),
    )


def _top(candidates: np.ndarray, key: np.ndarray, ideas: np.ndarray) -> list[int]:
    """The SHOWN best candidates by ``key`` (ascending), ties broken by idea id."""
    ranked = sorted(candidates.tolist(), key=lambda j: (float(key[j]), int(ideas[j])))
    return ranked[:SHOWN]


def groups_from_export(data: dict[str, Any]) -> Groups:
    """Recompute the opinion groups from the open data export's ``opinions`` section (its
    anonymised vote matrix, seed and minimum votes): the same groups as published."""
    section = data["opinions"]
    votes = Votes.from_triples(tuple(t) for t in section["matrix"])
    votes = Votes(int(section["participants"]), votes.ideas, votes.rows, votes.cols, votes.values)
    return compute_groups(votes, seed=int(section["seed"]), min_votes=int(section["min_votes"]))
