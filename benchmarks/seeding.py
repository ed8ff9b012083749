"""Bulk seeding shared by the PostgreSQL benchmarks: one project's ranking sets, made in SQL.

Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series), so 200,000 sets
with their conversations, prompts and K candidates take seconds rather than the minutes the
services would. The benchmarks differ only in the texts, the dates and the sets' state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SetSeed:
    """What to put in: `sets` prompts with `k` model-written candidates each.

    `prompt_text` and `candidate_text` are SQL expressions over the prompt message `m` (and, for
    candidates, the candidate number `g`); they go into statements with parameters, so a modulo is
    written `%%`. `spread_days` > 1 spreads the conversations' dates over
    that many days. A `complete` set already has its `n` rankings counted; otherwise it collects.
    """

    project_id: int
    author_id: int
    model_id: int
    sets: int
    k: int
    n: int
    prompt_text: str
    candidate_text: str
    spread_days: int = 1
    complete: bool = False


def seed_ranking_sets(cursor, seed: SetSeed) -> None:
    """Conversations, prompts, candidates, ranking sets and their candidates' positions."""
    cursor.execute(
        """
        INSERT INTO annotations_conversation (project_id, source, external_id, meta, created_at)
        SELECT %s, 'import', 'bench-' || g, '{}', now() - (g %% %s) * interval '1 day'
        FROM generate_series(1, %s) AS g
        """,
        [seed.project_id, max(seed.spread_days, 1), seed.sets],
    )
    cursor.execute(
        f"""
        INSERT INTO annotations_message (conversation_id, role, text, lang, depth,
            author_user_id, is_synthetic, external_id, meta, created_at)
        SELECT m.id, 'user', {seed.prompt_text}, 'en', 0, %s, false, '', '{{}}', m.created_at
        FROM annotations_conversation m WHERE m.project_id = %s
        """,  # noqa: S608 - the texts are the benchmarks' own SQL expressions
        [seed.author_id, seed.project_id],
    )
    cursor.execute(
        f"""
        INSERT INTO annotations_message (conversation_id, parent_id, role, text, lang, depth,
            author_model_id, is_synthetic, external_id, meta, created_at)
        SELECT m.conversation_id, m.id, 'assistant', {seed.candidate_text}, 'en', 1, %s, true,
            '', '{{}}', m.created_at
        FROM annotations_message m
        JOIN annotations_conversation c ON c.id = m.conversation_id
        CROSS JOIN generate_series(1, %s) AS g
        WHERE c.project_id = %s AND m.depth = 0
        """,  # noqa: S608 - as above
        [seed.model_id, seed.k, seed.project_id],
    )
    cursor.execute(
        """
        INSERT INTO annotations_rankingset (project_id, context_id, rankings_needed,
            rankings_count, state, resamples, cancel_reason, created_at, completed_at)
        SELECT %s, m.id, %s, %s, %s, 0, '', m.created_at,
            CASE WHEN %s THEN m.created_at END
        FROM annotations_message m
        JOIN annotations_conversation c ON c.id = m.conversation_id
        WHERE c.project_id = %s AND m.depth = 0
        """,
        [
            seed.project_id,
            seed.n,
            seed.n if seed.complete else 0,
            "complete" if seed.complete else "collecting",
            seed.complete,
            seed.project_id,
        ],
    )
    cursor.execute(
        """
        INSERT INTO annotations_rankingcandidate (ranking_set_id, message_id, position)
        SELECT s.id, m.id, row_number() OVER (PARTITION BY s.id ORDER BY m.id) - 1
        FROM annotations_rankingset s
        JOIN annotations_message m ON m.parent_id = s.context_id
        WHERE s.project_id = %s
        """,
        [seed.project_id],
    )
