"""Words to stems for the ideas' lexical index (similar ideas, search), French and English.

Each word of a query gives its French and its English Snowball stem (snowballstemmer, pure
Python: no model, nothing downloaded), accents folded; stop words of both languages are dropped.
A citizen writes in either language and we do not guess which: a stem is matched as a prefix of
the ideas' words, so ``vélo`` meets ``vélos`` and ``bikes`` meets ``bike``. Ideas are not
stemmed: SQLite's FTS5 index holds their words (accents folded) and PostgreSQL its ``french``
and ``english`` text search vectors; the query's stems are prefixes in both.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The significant words of a text, lowercased, in order (stop words dropped)."""
    return [w for w in _WORD.findall(text.casefold()) if w not in STOP_WORDS and len(w) > 1]


def query_words(text: str) -> list[str]:
    """The distinct significant words of a query, bounded."""
    return list(dict.fromkeys(words(text)))[:MAX_QUERY_TERMS]


@dataclass(frozen=True, slots=True)
class Forms:
    """How one query word may appear in an idea: as one of ``exact`` (the word, or a short
    stem) or as a word starting with one of ``prefixes`` (its stems of four letters or more),
    accents folded."""

    exact: frozenset[str]
    prefixes: frozenset[str]

    def found_in(self, folded_words: set[str]) -> bool:
        return bool(self.exact & folded_words) or any(
            w.startswith(p) for w in folded_words for p in self.prefixes
        )

    def fts(self) -> list[str]:
        """FTS5 terms: ``"velo"*`` matches ``vélos`` (the index folds accents too)."""
        return sorted({f'"{e}"' for e in self.exact} | {f'"{p}"*' for p in self.prefixes})


class Stemmer:
    """French and English Snowball stemmers. Not thread-safe (Snowball stemmers keep state):
    one per unit of work, never shared between threads."""

    def __init__(self) -> None:
        self._french = snowballstemmer.stemmer("french")
        self._english = snowballstemmer.stemmer("english")
        self._forms: dict[str, Forms] = {}

    def forms(self, word: str) -> Forms:
        found = self._forms.get(word)
        if found is not None:
            return found
        exact = {fold(word)}
        prefixes: set[str] = set()
        for stem in (self._french.stemWord(word), self._english.stemWord(word)):
            stem = fold(stem)
            if len(stem) > 3 and stem[-1] in "sx":  # plurals Snowball leaves on short words
                stem = stem[:-1]
            (prefixes if len(stem) >= 4 else exact).add(stem)
        found = self._forms[word] = Forms(frozenset(exact), frozenset(prefixes))
        return found

    def fts_query(self, text: str, *, any_term: bool) -> str | None:
        """An FTS5 MATCH expression: any word (similar ideas) or, for a search, every word
        (each in one of its forms). None when no significant word is left."""
        terms = query_words(text)
        if not terms:
            return None
        if any_term:
            return " OR ".join(dict.fromkeys(t for w in terms for t in self.forms(w).fts()))
        return " AND ".join("(" + " OR ".join(self.forms(w).fts()) + ")" for w in terms)
