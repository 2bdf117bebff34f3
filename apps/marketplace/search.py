"""Typo-tolerant search terms: trigram similarity over the catalog's own lexicon.

pg_trgm is not part of the embedded PostgreSQL, so the trigram work happens here: every word of a
blueprint's name, summary and tags is kept in ``SearchTerm`` with its trigrams (the same padding
as pg_trgm: two spaces before, one after), and a GIN index on the arrays finds the words sharing
trigrams with a query word. Similarity is pg_trgm's: shared trigrams / all distinct trigrams.
"""

from __future__ import annotations

import re

from django.db import connection

MIN_WORD = 2
MAX_WORD = 64
MAX_QUERY_WORDS = 8
SIMILARITY_THRESHOLD = 0.4
CORRECTIONS_PER_WORD = 3

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words_of(text: str) -> list[str]:
    """The lowercase words of ``text``, as search terms (2–64 letters or digits)."""
    return [w for w in _WORD.findall(text.lower()) if MIN_WORD <= len(w) <= MAX_WORD]


def term_trigrams(word: str) -> list[str]:
    padded = f"  {word} "
    return sorted({padded[i : i + 3] for i in range(len(padded) - 2)})


def trigram_similarity(a: str, b: str) -> float:
    ta, tb = set(term_trigrams(a)), set(term_trigrams(b))
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


_CORRECTIONS_SQL = """
SELECT q.word, c.term
FROM unnest(%s::text[]) AS q(word)
CROSS JOIN LATERAL (
    SELECT t.term,
           cardinality(ARRAY(SELECT unnest(t.trigrams) INTERSECT SELECT unnest(g.grams)))::float
           / cardinality(ARRAY(SELECT unnest(t.trigrams) UNION SELECT unnest(g.grams))) AS score
    FROM (SELECT ARRAY(
            SELECT DISTINCT substr('  ' || q.word || ' ', i, 3)
            FROM generate_series(1, length(q.word) + 1) AS i
          )::varchar[] AS grams,
          -- Without the two padded leading trigrams ("  c", " cu"), which nearly every word
          -- starting with the same letter shares: fewer candidates, same best matches.
          ARRAY(
            SELECT DISTINCT substr('  ' || q.word || ' ', i, 3)
            FROM generate_series(3, length(q.word) + 1) AS i
          )::varchar[] AS inner_grams) AS g,
         marketplace_searchterm AS t
    WHERE t.trigrams && g.inner_grams AND t.term <> q.word
      AND abs(length(t.term) - length(q.word)) <= 2
    ORDER BY score DESC, t.term
    LIMIT %s
) AS c
WHERE c.score >= %s
  AND NOT EXISTS (SELECT 1 FROM marketplace_searchterm k WHERE k.term = q.word)
"""


def corrections(words: list[str]) -> dict[str, list[str]]:
    """For each word the catalog does not know, up to three known words it may be a typo of."""
    if not words:
        return {}
    found: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_CORRECTIONS_SQL, [list(words), CORRECTIONS_PER_WORD, SIMILARITY_THRESHOLD])
        for word, term in cursor.fetchall():
            found.setdefault(word, []).append(term)
    return found
