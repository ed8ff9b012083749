"""Data explorer benchmark: full-text search and the list pages on 200,000 ranking sets.

A project (English only, so searches use the `english` configuration) gets 200,000
conversations, each a prompt with K = 2 model-written candidates and a complete ranking set
with three rankings: 600,000 messages, 600,000 rankings. Messages and sets are generated inside
PostgreSQL (INSERT ... SELECT, `benchmarks/seeding.py`); the rankings are copied in with COPY.
Prompts talk about one of 40 topics (a common word: 1 message in 120) and carry a rarer code
word (1 in 3,000); a few candidates are labelled harmful or excluded.

Then it prints:

1. the search query of the explorer (`messages_matching`) for a rare and a common word, with
   the GIN index (annotations migration 0010) and, in a transaction rolled back afterwards,
   without it; and the plan's index name;
2. each explorer list page (conversations, ranking sets; no filter, filters, search; page 1 and
   a deep page) rendered through Django's test client as a logged-in lead: the median time of
   three renders and the number of queries per render, and the first render's time, which also
   reads the filter forms' choices (kept a few minutes after). Target: well under 1 s each.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python benchmarks/explorer.py

The database named by DATABASE_URL is only used to create and drop `parley_bench_explorer`;
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
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCH_DB = "parley_bench_explorer"
TOPICS = [
    "apples", "rivers", "volcanoes", "taxes", "gardening", "chess", "bicycles", "pianos",
    "glaciers", "sourdough", "satellites", "beekeeping", "origami", "lighthouses", "tides",
    "compilers", "mortgages", "sailing", "pottery", "eclipses", "vaccines", "knitting",
    "railways", "telescopes", "mushrooms", "archery", "bridges", "coffee", "deserts", "fossils",
    "galaxies", "harbours", "insulation", "jazz", "kites", "lanterns", "marathons", "nutmeg",
    "orchards", "penguins",
]  # fmt: skip
SETS = 200_000
K = 2
N = 3


def seed() -> None:
    from django.core.management import call_command
    from django.db import connection

    from annotations.models import ModelVersion, Project
    from benchmarks.seeding import (
        SetSeed,
        candidate_ids_by_set,
        copy_rankings,
        seed_members,
        seed_ranking_sets,
    )

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        slug="bench",
        name="Bench",
        languages=["en"],
        replies_per_set=K,
        rankings_per_set=N,
        label_schema=[{"name": "harmful", "kind": "flag"}],
    )
    model = ModelVersion.objects.create(name="bench-model", source="bench/model")
    author, members = seed_members(
        project, lead="author", trainers=(f"trainer{i}" for i in range(N))
    )
    trainers = [user.pk for user in members]
    topics = "ARRAY[" + ", ".join(f"'{topic}'" for topic in TOPICS) + "]"
    with connection.cursor() as cursor:
        seed_ranking_sets(
            cursor,
            SetSeed(
                project_id=project.pk,
                author_id=author.pk,
                model_id=model.pk,
                sets=SETS,
                k=K,
                n=N,
                prompt_text=f"'Question ' || m.id || ' about ' || ({topics})[1 + (m.id %% 40)::int]"
                " || ' (code word quill' || (m.id %% 1000) || '): how would you explain '"
                " || repeat('this idea, step by step, ', (1 + m.id %% 4)::int) || 'to a beginner?'",
                candidate_text="'Reply ' || g || ' to ' || m.id || '. ' || repeat("
                "'One more sentence of the answer. ', (1 + (m.id * 7 + g * 13) %% 9)::int)",
                spread_days=60,
                complete=True,
            ),
        )
        rng = random.Random(7)
        rankings = io.StringIO()
        for set_id, ids in candidate_ids_by_set(cursor, project.pk):
            for user_id in trainers:
                order = [[c] for c in rng.sample(ids, len(ids))]
                rankings.write(
                    f"{set_id}\t{user_id}\t{json.dumps(order)}\t{{}}\tf\t30000\tf\tnow\n"
                )
        copy_rankings(cursor, rankings)
        cursor.execute(
            """
            UPDATE annotations_rankingset SET agreement = (id %% 7) / 6.0,
                consensus = '[]'::jsonb WHERE project_id = %s
            """,
            [project.pk],
        )
        # One candidate in a hundred labelled harmful, one in two hundred excluded.
        cursor.execute(
            """
            INSERT INTO annotations_label (message_id, name, value, annotator_id, created_at)
            SELECT m.id, 'harmful', 1, %s, now() FROM annotations_message m
            WHERE m.depth = 1 AND m.id %% 100 = 0
            """,
            [trainers[0]],
        )
        cursor.execute("UPDATE annotations_message SET is_excluded = true WHERE id %% 200 = 1", [])
        cursor.execute("VACUUM (ANALYZE)")
    seconds = time.perf_counter() - started
    print(f"seeded {SETS:,} sets, {SETS * (K + 1):,} messages in {seconds:.0f} s")


def timed(run, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def search_figures(project) -> None:
    from django.db import connection, transaction

    from annotations.explorer import messages_matching, search_config
    from annotations.models import Message

    config = search_config(project)
    index = f"message_text_search_{config}"
    print(f"\nsearch ({config} configuration), median of 3:")
    for words in ["quill417", "glaciers", '"step by step" penguins']:
        matching = messages_matching(
            Message.objects.filter(conversation__project=project), words, config=config
        ).values_list("pk", flat=True)
        with_index, found = timed(lambda q=matching: len(list(q.all())))
        sql, params = matching.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX {index}")
            without_index, _ = timed(lambda q=matching: len(list(q.all())), repeat=1)
            transaction.set_rollback(True)  # the index comes back
        print(
            f"  {words!r:28} {found:>7,} messages: {with_index * 1000:8.1f} ms with the index"
            f" (plan uses it: {index in plan}), {without_index * 1000:8.1f} ms without"
            f" ({without_index / with_index:,.0f}x)"
        )


def page_figures(project) -> None:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from annotations.models import Conversation, RankingSet

    lead = project.memberships.get(role="lead").user
    client = Client()
    client.force_login(lead)
    conversation_pages = (Conversation.objects.filter(project=project).count() + 24) // 25
    set_pages = (RankingSet.objects.filter(project=project).count() + 24) // 25
    cases = [
        ("explore-conversations", {}),
        ("explore-conversations", {"page": conversation_pages // 2}),
        ("explore-conversations", {"page": conversation_pages}),
        ("explore-conversations", {"q": "glaciers"}),
        ("explore-conversations", {"q": "glaciers", "page": 50}),
        ("explore-conversations", {"q": "quill417"}),
        ("explore-conversations", {"q": "question"}),  # in every conversation
        ("explore-conversations", {"author": "author"}),
        ("explore-conversations", {"model": "bench-model", "lang": "en"}),
        ("explore-conversations", {"flag": "harmful"}),
        ("explore-conversations", {"flag": "excluded", "page": 100}),
        ("explore-conversations", {"source": "import", "since": "2000-01-01"}),
        ("explore-sets", {}),
        ("explore-sets", {"page": set_pages // 2}),
        ("explore-sets", {"page": set_pages}),
        ("explore-sets", {"state": "complete", "min_agreement": "0.5"}),
        ("explore-sets", {"q": "glaciers"}),
        ("explore-sets", {"q": "quill417"}),
        ("explore-sets", {"q": "reply"}),  # in every set
        ("explore-sets", {"author": "trainer1", "page": 20}),
        ("explore-sets", {"model": "bench-model"}),
        ("explore-sets", {"flag": "harmful"}),
        ("explore-sets", {"flag": "excluded"}),
    ]
    print("\nlist pages (a lead, through the test client), median of 3:")
    slowest = 0.0
    for name, params in cases:
        url = reverse(name, args=[project.slug])
        if params:
            url += "?" + urlencode(params)
        cache.clear()  # the first render reads the filter forms' choices afresh
        cold, _ = timed(lambda u=url: client.get(u), repeat=1)
        with CaptureQueriesContext(connection) as queries:
            seconds, response = timed(lambda u=url: client.get(u))
        assert response.status_code == 200, (url, response.status_code)
        slowest = max(slowest, seconds)
        print(
            f"  {seconds * 1000:8.1f} ms  {len(queries) // 3:3} queries"
            f"  (first, choices read: {cold * 1000:6.0f} ms)  {url}"
        )
    print(f"slowest page: {slowest * 1000:.0f} ms (target: well under 1,000 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse-db", action="store_true", help="keep a seeded database")
    args = parser.parse_args()
    from benchmarks.database import kept_or_fresh_database

    server = os.environ.get("DATABASE_URL", "")
    _, seeded = kept_or_fresh_database(server, BENCH_DB, reuse=args.reuse_db, sets=SETS)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not seeded:
        seed()
    from annotations.models import Project

    project = Project.objects.get(slug="bench")
    search_figures(project)
    page_figures(project)


if __name__ == "__main__":
    main()
