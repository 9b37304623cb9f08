"""Words to stems for the ideas' lexical index (similar ideas, search), French and English.

Each word of a text gives its French and its English Snowball stem (snowballstemmer, pure
Python: no model, nothing downloaded), accents folded; stop words of both languages are dropped.
A citizen writes in either language and we do not guess which: indexing both stems makes
``vélos`` meet ``vélo`` and ``bikes`` meet ``bike``. PostgreSQL uses its own ``french`` and
``english`` text search configurations instead (the same Snowball algorithms); SQLite's FTS5
indexes the stems computed here.
"""

from __future__ import annotations

import re
import unicodedata

import snowballstemmer

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 32

_STOP_WORDS = """
    a à afin ai aie ainsi alors au aucun aussi autre aux avec avez avoir avons c ça car ce ceci
    cela celle celles celui ces cet cette ceux chaque ci comme comment d dans de des donc dont du
    elle elles en encore est et étaient était etc été être eu eux faire fait faut il ils j je
    jusqu l la le les leur leurs lui m ma mais me même mes moi mon n ne ni nos notre nous on ont
    ou où par pas peu peut plus pour pourquoi qu quand que quel quelle quelles quels qui s sa
    sans se ses si son sont sous sur t ta te tes toi ton tous tout toute toutes très tu un une
    vos votre vous y
    about after all also am an and any are as at be been being but by can could did do does
    doing for from had has have having he her here hers him his how i if in into is it its just
    me more most my no nor not of off on once only or other our ours out over own same she
    should so some such than that the their theirs them then there these they this those to too
    under until up very was we were what when where which while who whom why will with would
    you your yours
    """
STOP_WORDS = frozenset(_STOP_WORDS.split())

_FRENCH = snowballstemmer.stemmer("french")
_ENGLISH = snowballstemmer.stemmer("english")


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The significant words of a text, lowercased, in order (stop words dropped)."""
    return [w for w in _WORD.findall(text.casefold()) if w not in STOP_WORDS and len(w) > 1]


def word_stems(word: str) -> set[str]:
    """A word's French and English stems, accents folded (``vélos`` → ``velo``…)."""
    out = set()
    for stem in (_FRENCH.stemWord(word), _ENGLISH.stemWord(word)):
        stem = fold(stem)
        if len(stem) > 3 and stem[-1] in "sx":  # plurals Snowball leaves on short words
            stem = stem[:-1]
        if stem:
            out.add(stem)
    return out


def stems(text: str) -> list[str]:
    """Every stem of a text, once, in order of first appearance."""
    out: dict[str, None] = {}
    for word in words(text):
        for stem in sorted(word_stems(word)):
            out.setdefault(stem, None)
    return list(out)


def query_words(text: str) -> list[str]:
    """The distinct significant words of a query (for PostgreSQL's configurations), bounded."""
    return list(dict.fromkeys(words(text)))[:MAX_QUERY_TERMS]


def fts_query(text: str, *, any_term: bool) -> str | None:
    """An FTS5 MATCH expression over the stems of ``text``: any stem (similar ideas) or, for a
    search, every word (each word matching one of its stems). None when nothing is left."""
    terms = query_words(text)
    if not terms:
        return None
    if any_term:
        found = list(dict.fromkeys(s for w in terms for s in sorted(word_stems(w))))
        return " OR ".join(f'"{s}"' for s in found) or None
    groups = []
    for w in terms:
        alternatives = sorted(word_stems(w))
        if alternatives:
            groups.append("(" + " OR ".join(f'"{s}"' for s in alternatives) + ")")
    return " AND ".join(groups) or None
