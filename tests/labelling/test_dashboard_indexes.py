"""The indexes the dashboards read through (annotations migration 0013), shown with EXPLAIN on a
few thousand rows: the agreement page's lowest sets and the refresh's assistant turns."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotations.models import Conversation, Message, RankingSet
from labelling.dashboards.agreement import lowest_agreement_sets
from labelling.dashboards.gathering import gather
from labelling.dashboards.selectors import DateSpan
from tests.factories import ProjectFactory, start, trainers

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans"),
]

ROWS = 3000


def plan_of(queries, table: str) -> str:
    """EXPLAIN of the one captured statement that reads `table` (the very SQL the code ran)."""
    [sql] = [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"]]
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
