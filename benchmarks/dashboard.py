"""Dashboard benchmark: every lead dashboard page over 200,000 ranking sets on PostgreSQL.

A project with 200,000 complete ranking sets of K = 4 candidates (from three model versions,
about one in seven written by a person), three rankings each by 50 trainers, spread over a
year, is bulk-created in a database of its own, with a done task per ranking and a generation
request per set. Then:

1. the rollups are built from nothing (`rollups_rebuild`, what a lead's exclusion triggers) and
   brought current again (`rollups_refresh`, what the beat task runs every minute);
2. each dashboard page is requested as a lead through Django's test client: the first request
   (cold: templates, connection and caches fresh) and the median of five more (warm), with the
   number of SQL queries of one request.

Target: every page under 1 second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python benchmarks/dashboard.py

The database named by DATABASE_URL is only used to create and drop `parley_bench_dashboard`;
`--reuse-db` keeps the seeded one between runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCH_DB = "parley_bench_dashboard"
DAYS = 365
TRAINERS = 50
MODELS = ("policy-v1", "policy-v2", "policy-v3")
FLAGS = ("harmful", "untruthful", "fails_instruction")


def seed(*, sets: int, k: int, n: int, seed_value: int = 11) -> None:
    """Sets made in SQL (benchmarks.seeding), rankings and their figures computed here with
    the real maths and copied in, tasks and generation requests derived in SQL."""
    from django.core.management import call_command
    from django.db import connection

    from annotations.agreement import leave_one_out_agreement, length_preference
    from annotations.models import ModelVersion, Project
    from benchmarks.seeding import (
        SetSeed,
        agreeing_orders,
        copy_rankings,
        copy_set_figures,
        seed_members,
        seed_ranking_sets,
        set_figures_line,
    )

    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        slug="bench", name="Bench", replies_per_set=k, rankings_per_set=n
    )
    models = [ModelVersion.objects.create(name=name, source=f"bench/{name}") for name in MODELS]
    lead, members = seed_members(
        project, lead="lead", trainers=(f"trainer{i:02d}" for i in range(TRAINERS))
    )
    trainers = [user.pk for user in members]
    careless = set(trainers[:2])  # two trainers who rank at random
    with connection.cursor() as cursor:
        seed_ranking_sets(
            cursor,
            SetSeed(
                project_id=project.pk,
                author_id=lead.pk,
                model_id=models[0].pk,
                sets=sets,
                k=k,
                n=n,
                prompt_text="'Question ' || m.id || ': how would you explain '"
                " || repeat('this idea, step by step, ', (2 + m.id %% 5)::int) || 'to a beginner?'",
                candidate_text="'Reply ' || g || ' to ' || m.id || '. ' || repeat("
                "'One more sentence of the answer. ', (1 + (m.id * 7 + g * 13) %% 31)::int)",
                spread_days=DAYS,
                complete=True,
            ),
        )
        # Three model versions; about one candidate in seven written by a person; some
        # prompts in other languages; some conversations tagged.
        cursor.execute(
            """
            UPDATE annotations_message m SET
                author_model_id = CASE WHEN m.id %% 7 = 0 THEN NULL
                    ELSE (ARRAY[%s, %s, %s])[1 + m.id %% 3] END,
                author_user_id = CASE WHEN m.id %% 7 = 0 THEN %s END,
                is_synthetic = m.id %% 7 <> 0
            FROM annotations_conversation c
            WHERE c.id = m.conversation_id AND c.project_id = %s AND m.depth = 1
            """,
            [*(m.pk for m in models), trainers[-1], project.pk],
        )
        cursor.execute(
            """
            UPDATE annotations_message m
            SET lang = (ARRAY['en', 'en', 'en', 'de', 'fr'])[1 + m.id %% 5]
            FROM annotations_conversation c
            WHERE c.id = m.conversation_id AND c.project_id = %s AND m.depth = 0
            """,
            [project.pk],
        )
        cursor.execute(
            """
            UPDATE annotations_conversation SET meta = jsonb_build_object('tags',
                jsonb_build_array((ARRAY['coding', 'maths', 'writing', 'advice'])[1 + id %% 4]))
            WHERE project_id = %s AND id %% 2 = 0
            """,
            [project.pk],
        )
        cursor.execute(
            """
            SELECT s.id, s.completed_at, array_agg(c.message_id ORDER BY c.position),
                   array_agg(length(m.text) ORDER BY c.position)
            FROM annotations_rankingset s
            JOIN annotations_rankingcandidate c ON c.ranking_set_id = s.id
            JOIN annotations_message m ON m.id = c.message_id
            WHERE s.project_id = %s GROUP BY s.id ORDER BY s.id
            """,
            [project.pk],
        )
        rows = cursor.fetchall()
        rng = random.Random(seed_value)
        rankings, figures = io.StringIO(), io.StringIO()
        for set_id, completed_at, ids, lengths in rows:
            raters = rng.sample(trainers, n)
            orders = agreeing_orders(rng, ids, n, careless_first=raters[0] in careless)
            by_id = dict(zip(ids, lengths, strict=True))
            loo = leave_one_out_agreement(orders, ids)
            for index, (user_id, order) in enumerate(zip(raters, orders, strict=True)):
                flags = {}
                if rng.random() < 0.05:
                    flags = {str(rng.choice(ids)): [rng.choice(FLAGS)]}
                pairs, longer = length_preference(order, by_id)
                agreement = "\\N" if loo[index] is None else loo[index]
                rankings.write(
                    f"{set_id}\t{user_id}\t{json.dumps(order)}\t{json.dumps(flags)}"
                    f"\t{'t' if rng.random() < 0.02 else 'f'}\t{rng.randint(5000, 90000)}\tf"
                    f"\t{completed_at.isoformat()}\t{agreement}\t{pairs}\t{longer}\n"
                )
            figures.write(set_figures_line(set_id, orders, ids))
        copy_rankings(
            cursor,
            rankings,
            extra_columns=("consensus_agreement", "length_pairs", "longer_preferred"),
        )
        copy_set_figures(cursor, figures)
        # A done ranking task per ranking (time from its ranking), a done generation request
        # per set (latency from a few seconds to a minute).
        cursor.execute(
            """
            INSERT INTO labelling_task (project_id, kind, state, assignee_id, priority,
                ranking_set_id, autosave, pages_opened, autosave_page, autosave_seq,
                autosave_revision, skip_reason, result, created_at, assigned_at, done_at)
            SELECT s.project_id, 'ranking', 'done', r.annotator_id, 0, s.id, '{}', 1, 0, 0, 0,
                '', '{}', s.created_at,
                r.created_at - r.time_spent_ms * interval '1 millisecond', r.created_at
            FROM annotations_ranking r JOIN annotations_rankingset s ON s.id = r.ranking_set_id
            WHERE s.project_id = %s
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO trainer_bridge_generationrequest (project_id, context_id,
                model_version_id, purpose, n, params, state, attempts, error, worker,
                queued_at, started_at, finished_at)
            SELECT s.project_id, s.context_id, %s, 'candidates', 4, '{}', 'done', 1, '', 'w',
                s.created_at - (2 + s.id %% 60) * interval '1 second',
                s.created_at - interval '1 second', s.created_at
            FROM annotations_rankingset s WHERE s.project_id = %s
            """,
            [models[0].pk, project.pk],
        )
        cursor.execute("VACUUM (ANALYZE)")


def time_pages(project, lead) -> list[tuple[str, float, float, int]]:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from annotations.models import RankingSet

    lowest = (
        RankingSet.objects.filter(project=project, state="complete")
        .order_by("agreement", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    pages = [
        ("overview", reverse("dashboard-overview", args=[project.slug])),
        ("agreement", reverse("dashboard-agreement", args=[project.slug])),
        ("trainers", reverse("dashboard-trainers", args=[project.slug])),
        ("length bias", reverse("dashboard-length", args=[project.slug])),
        ("models", reverse("dashboard-models", args=[project.slug])),
        ("actions", reverse("dashboard-actions", args=[project.slug])),
        ("a trainer's page", reverse("dashboard-trainer", args=[project.slug, "trainer00"])),
        ("a set's drill-down", reverse("dashboard-set", args=[project.slug, lowest])),
    ]
    client = Client()
    client.force_login(lead)
    results = []
    for name, url in pages:
        # The whole year of data, not the default 90 days.
        params = {} if "set" in name else {"start": _year_ago()}
        connection.close()  # cold: a new connection, as a fresh worker would have
        started = time.perf_counter()
        response = client.get(url, params)
        cold = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code}: {response.content[:300]!r}")
        warm_times = []
        for _ in range(5):
            started = time.perf_counter()
            client.get(url, params)
            warm_times.append(time.perf_counter() - started)
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            client.get(url, params)
        results.append((name, cold, statistics.median(warm_times), len(queries)))
    return results


class _Undo(Exception):
    pass


def time_exclusion(project, lead) -> None:
    """One trainer's rankings excluded over the whole year (the Actions page's heaviest
    request: every set they touched re-finalized and reopened), rolled back afterwards."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from labelling.dashboards.actions import trainer_exclude

    trainer = get_user_model().objects.get(username="trainer10")
    started = time.perf_counter()
    try:
        with transaction.atomic():
            _, opened = trainer_exclude(
                project=project,
                annotator=trainer,
                since=timezone.now() - timedelta(days=DAYS + 1),
                actor=lead,
                reason="benchmark",
            )
            seconds = time.perf_counter() - started
            raise _Undo
    except _Undo:
        pass
    print(
        f"excluding one trainer's year ({opened:,} ranking slots reopened): {seconds:.1f} s "
        f"(rolled back; the rollups' rebuild then runs in the background)"
    )


def _year_ago() -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now().date() - timedelta(days=DAYS)).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--reuse-db", action="store_true", help="keep and reuse the seeded data")
    args = parser.parse_args()
    from benchmarks.database import drop_bench_database, kept_or_fresh_database

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db_url, seeded = kept_or_fresh_database(server, BENCH_DB, reuse=args.reuse_db, sets=args.sets)
    if not seeded:
        started = time.perf_counter()
        seed(sets=args.sets, k=args.k, n=args.n)
        seconds = time.perf_counter() - started
        print(
            f"seeded {args.sets:,} sets of K={args.k} with {args.n} rankings each by "
            f"{TRAINERS} trainers over {DAYS} days in {seconds:.1f} s"
        )
    else:
        print("reusing the seeded database")

    from django.contrib.auth import get_user_model

    from annotations.models import Project
    from labelling.dashboards.rollups import rollups_rebuild, rollups_refresh

    project = Project.objects.get(slug="bench")
    lead = get_user_model().objects.get(username="lead")
    started = time.perf_counter()
    rollups_rebuild(project=project)
    print(f"rollups_rebuild (everything): {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    read = rollups_refresh(project=project)
    print(
        f"rollups_refresh (the beat task's run): {time.perf_counter() - started:.2f} s, "
        f"{read:,} source rows re-read"
    )
    print()
    print(f"{'page':<22} {'cold (s)':>9} {'warm (s)':>9} {'queries':>8}")
    slowest = 0.0
    for name, cold, warm, queries in time_pages(project, lead):
        slowest = max(slowest, cold, warm)
        print(f"{name:<22} {cold:>9.3f} {warm:>9.3f} {queries:>8}")
    print()
    print(f"slowest page: {slowest:.3f} s (target < 1 s): {'met' if slowest < 1 else 'MISSED'}")
    time_exclusion(project, lead)
    if not args.reuse_db:
        from django.db import connection

        connection.close()
        drop_bench_database(server, BENCH_DB)


if __name__ == "__main__":
    main()
