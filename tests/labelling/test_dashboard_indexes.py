"""The indexes the dashboards read through, shown with EXPLAIN on a few thousand rows: the
agreement page's lowest sets and the refresh's assistant turns (annotations 0013), and the
refresh's completed sets, done tasks and finished generations (annotations 0014, labelling 0009,
trainer_bridge 0006)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotations.models import Conversation, Message, RankingSet
from labelling.dashboards.agreement import lowest_agreement_sets
from labelling.dashboards.gathering import gather
from labelling.dashboards.selectors import DateSpan
from labelling.models import Task
from tests.factories import ModelVersionFactory, ProjectFactory, start, trainers
from trainer_bridge.models import GenerationRequest

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans"),
]

ROWS = 3000
# The refresh tests' rows are this far apart, a month in all: a day holds 96 of them.
SPACING = timedelta(minutes=15)


def statements_reading(queries, table: str) -> list[str]:
    return [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"]]


def plan_of(queries, table: str) -> str:
    """EXPLAIN of the one captured statement that reads `table` (the very SQL the code ran)."""
    [sql] = statements_reading(queries, table)
    return explain(sql)


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        # Few rows: without this the planner may rightly read the whole table; the question is
        # whether an index can serve the statement at all, and which one it takes.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def test_the_lowest_sets_are_read_in_order_from_their_index():
    project, other = ProjectFactory(slug="low"), ProjectFactory(slug="other")
    now = timezone.now()
    for owner in (project, other):
        context = start(owner, "Which is best?")
        RankingSet.objects.bulk_create(
            RankingSet(
                project=owner,
                context=context,
                state=RankingSet.State.COMPLETE if i % 4 else RankingSet.State.COLLECTING,
                agreement=(i * 37 % 101) / 100 if i % 4 else None,
                completed_at=now - timedelta(hours=i % 24 * 30) if i % 4 else None,
            )
            for i in range(ROWS)
        )
    analyze("annotations_rankingset")
    span = DateSpan(start=(now - timedelta(days=30)).date(), end=now.date())

    with CaptureQueriesContext(connection) as captured:
        lowest = lowest_agreement_sets(project, span)
    plan = plan_of(captured.captured_queries, "annotations_rankingset")

    assert [s.agreement for s in lowest] == sorted(s.agreement for s in lowest)
    assert len(lowest) == 50 and {s.project_id for s in lowest} == {project.pk}
    assert "ranking_set_lowest_idx" in plan, plan
    # Read in the list's order and stopped after a page: no sort of every set in the span.
    assert "Sort" not in plan, plan


def test_the_refresh_reads_recent_assistant_turns_through_their_index():
    project = ProjectFactory(slug="turns")
    (writer,) = trainers(project, 1)
    conversation = Conversation.objects.create(project=project, source=Conversation.Source.PROMPT)
    root = Message.objects.create(conversation=conversation, role="user", text="Hi", depth=0)
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            parent=root,
            depth=1,
            role=Message.Role.ASSISTANT if i % 2 else Message.Role.USER,
            author_user=writer,
            text=f"turn {i}",
        )
        for i in range(ROWS)
    )
    # Turn i written (i + 1) * 10 minutes ago, about three weeks in all (auto_now_add stamps
    # every row with now).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotations_message SET created_at = now() - (id - %s) * interval '10 minutes'",
            [root.pk],
        )
    analyze("annotations_message", "annotations_conversation")
    since = timezone.now() - timedelta(days=1)

    with CaptureQueriesContext(connection) as captured:
        gathered = gather(project, since)
    plan = plan_of(captured.captured_queries, "annotations_message")

    # Turns 0..142 are less than a day old; the odd ones are the assistant's.
    assert sum(day.assistant_turns for day in gathered.days.values()) == 71
    assert "message_human_turn_idx" in plan, plan


def test_the_refresh_reads_recently_completed_sets_through_their_index():
    project, other = ProjectFactory(slug="completed"), ProjectFactory(slug="other")
    now = timezone.now()
    for owner in (project, other):
        context = start(owner, "Which is best?")
        RankingSet.objects.bulk_create(
            RankingSet(
                project=owner,
                context=context,
                state=RankingSet.State.COMPLETE if i % 4 else RankingSet.State.COLLECTING,
                agreement=0.5 if i % 4 else None,
                completed_at=now - i * SPACING if i % 4 else None,
            )
            for i in range(ROWS)
        )
    analyze("annotations_rankingset")

    with CaptureQueriesContext(connection) as captured:
        gathered = gather(project, timezone.now() - timedelta(days=1))
    # The sets are read in batches by id; every batch is the same statement but for the id.
    first_batch, *_ = statements_reading(captured.captured_queries, "annotations_rankingset")
    plan = explain(first_batch)

    # Sets 0..95 completed less than a day ago; three in four of them are complete.
    assert sum(day.sets_completed for day in gathered.days.values()) == 72
    assert "ranking_set_completed_idx" in plan, plan


def test_the_refresh_reads_recently_done_tasks_through_their_index():
    project, other = ProjectFactory(slug="done"), ProjectFactory(slug="other")
    now = timezone.now()
    for owner in (project, other):
        Task.objects.bulk_create(
            Task(
                project=owner,
                kind=Task.Kind.DEMONSTRATION,
                state=Task.State.DONE if i % 3 else Task.State.OPEN,
                assigned_at=now - i * SPACING - timedelta(minutes=5) if i % 3 else None,
                done_at=now - i * SPACING if i % 3 else None,
            )
            for i in range(ROWS)
        )
    analyze("labelling_task")

    with CaptureQueriesContext(connection) as captured:
        gathered = gather(project, timezone.now() - timedelta(days=1))
    plan = plan_of(captured.captured_queries, "labelling_task")

    # Tasks 0..95 were done less than a day ago; two in three of them are done.
    assert sum(sum(day.tasks_done.values()) for day in gathered.days.values()) == 64
    assert "task_done_idx" in plan, plan


def test_the_refresh_reads_recently_finished_generations_through_their_index():
    project, other = ProjectFactory(slug="finished"), ProjectFactory(slug="other")
    model = ModelVersionFactory()
    now = timezone.now()
    states = [
        GenerationRequest.State.QUEUED,
        GenerationRequest.State.DONE,
        GenerationRequest.State.FAILED,
    ]
    for owner in (project, other):
        context = start(owner, "Write me a poem.")
        GenerationRequest.objects.bulk_create(
            GenerationRequest(
                project=owner,
                context=context,
                model_version=model,
                purpose=GenerationRequest.Purpose.CANDIDATES,
                state=states[i % 3],
                finished_at=now - i * SPACING if i % 3 else None,
            )
            for i in range(ROWS)
        )
    analyze("trainer_bridge_generationrequest")

    with CaptureQueriesContext(connection) as captured:
        gathered = gather(project, timezone.now() - timedelta(days=1))
    plan = plan_of(captured.captured_queries, "trainer_bridge_generationrequest")

    # Requests 0..95 finished less than a day ago (if at all): a third done, a third failed.
    days = gathered.days.values()
    assert sum(sum(day.generation_seconds) for day in days) == 32
    assert sum(day.generations_failed for day in days) == 32
    assert "generation_finished_idx" in plan, plan
