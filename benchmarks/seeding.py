"""Bulk seeding shared by the PostgreSQL benchmarks: one project's members and ranking sets, its
rankings copied in, and the sets' figures computed by the real maths.

Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series), so 200,000 sets
with their conversations, prompts and K candidates take seconds rather than the minutes the
services would. The benchmarks differ only in the texts, the dates and the sets' state.
Rankings made in Python (so consensus and agreement are real) go in with COPY FROM.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

RANKING_COLUMNS = (
    "ranking_set_id", "annotator_id", '"order"', "flags", "all_bad", "time_spent_ms",
    "is_excluded", "created_at",
)  # fmt: skip


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


def seed_members(project: Any, *, lead: str, trainers: Iterable[str]) -> tuple[Any, list[Any]]:
    """A lead and trainers of `project`, made by name; benchmark users log in with
    `force_login` or a token, so none has a usable password."""
    from django.contrib.auth import get_user_model

    from annotations.models import Membership

    users = get_user_model()
    lead_user = users.objects.create_user(lead, password=None)
    Membership.objects.create(user=lead_user, project=project, role="lead")
    trainer_users = []
    for name in trainers:
        user = users.objects.create_user(name, password=None)
        Membership.objects.create(user=user, project=project, role="trainer")
        trainer_users.append(user)
    return lead_user, trainer_users


def candidate_ids_by_set(cursor, project_id: int) -> list[tuple[int, list[int]]]:
    """Each ranking set of the project with its candidates' message ids in position order."""
    cursor.execute(
        """
        SELECT ranking_set_id, array_agg(message_id ORDER BY position)
        FROM annotations_rankingcandidate c JOIN annotations_rankingset s
          ON s.id = c.ranking_set_id
        WHERE s.project_id = %s GROUP BY ranking_set_id ORDER BY ranking_set_id
        """,
        [project_id],
    )
    return cursor.fetchall()


def agreeing_orders(
    rng: random.Random, ids: Sequence[int], raters: int, *, careless_first: bool = False
) -> list[list[list[int]]]:
    """Rankings (best first, one candidate a group) by `raters` trainers who mostly agree: a
    shared order with at most one neighbouring swap each; a careless first trainer shuffles."""
    base = list(ids)
    rng.shuffle(base)
    orders = []
    for index in range(raters):
        order = list(base)
        if careless_first and index == 0:
            rng.shuffle(order)
        else:
            i = rng.randrange(len(order) - 1)
            if rng.random() < 0.5:
                order[i], order[i + 1] = order[i + 1], order[i]
        orders.append([[c] for c in order])
    return orders


def copy_rankings(cursor, rows: io.StringIO, *, extra_columns: Sequence[str] = ()) -> None:
    """COPY the tab-separated rankings in `rows` (RANKING_COLUMNS, then `extra_columns`)."""
    rows.seek(0)
    columns = ", ".join([*RANKING_COLUMNS, *extra_columns])
    cursor.copy_expert(f"COPY annotations_ranking ({columns}) FROM STDIN", rows)


def set_figures_line(set_id: int, orders: list, ids: Sequence[int]) -> str:
    """A set's consensus, agreement and Kendall's tau computed by the real maths, as a line
    for `copy_set_figures`."""
    from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement

    return (
        f"{set_id}\t{json.dumps(consensus_order(orders, ids))}"
        f"\t{pairwise_agreement(orders)}\t{kendall_tau(orders)}\n"
    )


def copy_set_figures(cursor, figures: io.StringIO) -> None:
    """Write the lines of `set_figures_line` onto their ranking sets."""
    figures.seek(0)
    cursor.execute(
        "CREATE TEMP TABLE bench_figures (id bigint, consensus jsonb, agreement float8, tau float8)"
    )
    cursor.copy_expert("COPY bench_figures FROM STDIN", figures)
    cursor.execute(
        """
        UPDATE annotations_rankingset s
        SET consensus = f.consensus, agreement = f.agreement, kendall_tau = f.tau
        FROM bench_figures f WHERE f.id = s.id
        """
    )
