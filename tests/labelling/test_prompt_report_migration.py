"""The move of prompt reports from labelling to annotations keeps every row, both ways.

Not marked `postgres`: it runs on SQLite and on PostgreSQL alike (on PostgreSQL it also checks
that the id sequence was moved past the copied ids).
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Schema changes cannot run inside the transaction a plain django_db test is wrapped in.
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("annotations", "0006_ranking_set_resamples_and_cancel_reason"),
    ("labelling", "0004_task_fk_indexes_covered_by_composites"),
]
AFTER = [
    ("annotations", "0007_promptreport"),
    ("labelling", "0005_prompt_report_moves_to_annotations"),
]
FIELDS = ["id", "project_id", "message_id", "reporter_id", "reason", "note", "state"]
FIELDS += ["decided_by_id", "decided_at", "created_at"]


def migrate(targets):
    """Migrate the test database to `targets`; return the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_latest_afterwards():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def rows(model):
    return list(model.objects.order_by("pk").values(*FIELDS))


def test_reports_move_to_annotations_with_their_ids_and_back(at_latest_afterwards):
    old = migrate(BEFORE)
    users = old.get_model("auth", "User")
    trainer = users.objects.create(username="tina")
    lead = users.objects.create(username="lee")
    project = old.get_model("annotations", "Project").objects.create(slug="alpha", name="Alpha")
    conversation = old.get_model("annotations", "Conversation").objects.create(
        project=project, source="prompt"
    )
    messages = old.get_model("annotations", "Message")
    first = messages.objects.create(conversation=conversation, role="user", text="P", depth=0)
    reports = old.get_model("labelling", "PromptReport")
    reports.objects.create(
        id=41, project=project, message=first, reporter=trainer, reason="pii", note="address"
    )
    reports.objects.create(
        id=57,
        project=project,
        message=first,
        reporter=None,
        reason="harmful",
        state="upheld",
        decided_by=lead,
        decided_at=timezone.now(),
    )
    # Old reports keep their own time, not the time of the migration.
    reports.objects.filter(pk=41).update(created_at=timezone.now() - timedelta(days=30))
    before = rows(reports)

    new = migrate(AFTER)
    moved = new.get_model("annotations", "PromptReport")
    assert rows(moved) == before
    assert "labelling_promptreport" not in connection.introspection.table_names()
    # The next report gets a fresh id after the copied ones (on PostgreSQL: the sequence moved).
    later = moved.objects.create(project_id=project.pk, message_id=first.pk, reason="nonsense")
    assert later.pk > 57

    after = rows(moved)

    back = migrate(BEFORE)
    returned = back.get_model("labelling", "PromptReport")
    assert rows(returned) == after
    assert (
        returned.objects.create(project_id=project.pk, message_id=first.pk, reason="pii").pk
        > later.pk
    )
