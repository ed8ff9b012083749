"""Migration 0013 names, on the rankings a standing exclusion already took out, that exclusion,
so that lifting it counts them again; rankings a lead excluded by hand stay unnamed."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# Schema changes cannot run inside the transaction a plain django_db test is wrapped in.
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("annotations", "0012_message_parent_triggers_again")]
AFTER = [("annotations", "0013_exclusion_lift_and_dashboard_indexes")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_latest_afterwards():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_standing_exclusions_get_their_rankings_named(at_latest_afterwards):
    old = migrate(BEFORE)
    users = old.get_model("auth", "User")
    trainer, lead = users.objects.create(username="tina"), users.objects.create(username="lee")
    project = old.get_model("annotations", "Project").objects.create(slug="alpha", name="Alpha")
    conversation = old.get_model("annotations", "Conversation").objects.create(
        project=project, source="prompt"
    )
    context = old.get_model("annotations", "Message").objects.create(
        conversation=conversation, role="user", text="P", depth=0
    )
    sets = old.get_model("annotations", "RankingSet")
    rankings = old.get_model("annotations", "Ranking")
    now = timezone.now()

    def ranking(days_ago, excluded):
        the_set = sets.objects.create(project=project, context=context, state="collecting")
        made = rankings.objects.create(
            ranking_set=the_set, annotator=trainer, order=[], is_excluded=excluded
        )
        rankings.objects.filter(pk=made.pk).update(created_at=now - timedelta(days=days_ago))
        return made.pk

    before_the_date = ranking(10, False)
    by_the_exclusion = ranking(1, True)
    by_hand = ranking(2, True)
    old.get_model("annotations", "AuditEntry").objects.create(
        project=project,
        actor=lead,
        action="ranking.exclude",
        target=f"ranking {by_hand} by tina (set 1)",
    )
    exclusions = old.get_model("annotations", "AnnotatorExclusion")
    standing = exclusions.objects.create(
        project=project, annotator=trainer, since=now - timedelta(days=5), reason="r"
    )
    exclusions.objects.create(
        project=project,
        annotator=trainer,
        since=now - timedelta(days=30),
        reason="old",
        lifted_at=now - timedelta(days=20),
    )

    new = migrate(AFTER)
    named = dict(new.get_model("annotations", "Ranking").objects.values_list("pk", "excluded_by"))
    assert named == {before_the_date: None, by_the_exclusion: standing.pk, by_hand: None}
