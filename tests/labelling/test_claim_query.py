"""The claim statement: one SQL text serves every project and user, and it picks exactly the task
the kind's `eligible` queryset (the claim on SQLite) would pick."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotations.models import Conversation, Message, PromptReport
from labelling.claims import eligible_tasks, task_claim_next, task_skip
from labelling.kinds import task_kind
from labelling.models import Task, TaskSkip
from tests.factories import (
    MembershipFactory,
    ProjectFactory,
    claim,
    make_ranking_set,
    rank,
    trainers,
)

pytestmark = pytest.mark.django_db


def test_one_claim_statement_serves_every_project_and_user():
    alpha, beta = ProjectFactory(slug="alpha"), ProjectFactory(slug="beta")
    [writer, reader] = trainers(alpha, 2)
    MembershipFactory(project=beta, user=writer, role="trainer")
    MembershipFactory(project=beta, user=reader, role="trainer")
    own = make_ranking_set(alpha, authors=[writer])
    other = make_ranking_set(beta)

    # The claims after the first must not carry its ids along.
    assert claim(alpha, reader).ranking_set == own
    assert claim(alpha, writer) is None
    assert claim(beta, writer).ranking_set == other
    assert claim(beta, reader).ranking_set == other


def claims_agree_with_the_orm(project, users, kind: str) -> int:
    """Each user claims and skips until nothing is left; every claim must be the task that the
    kind's `eligible` queryset puts first at that moment. Returns how many claims were made."""
    handler = task_kind(kind)
    made = 0
    for user in users:
        while True:
            expected = eligible_tasks(handler, project, user).first()
            existing = set(Task.objects.values_list("pk", flat=True))
            task = task_claim_next(project=project, user=user, kind=kind)
            if expected is None:
                # None eligible: nothing, or a task the kind makes (a blank demonstration).
                assert task is None or task.pk not in existing
                break
            assert task is not None and task.pk == expected.pk
            made += 1
            task_skip(task_id=task.pk, user=user, reason="next")
    return made


def hold(task: Task, user) -> Task:
    Task.objects.filter(pk=task.pk).update(
        state=Task.State.ASSIGNED, assignee=user, lease_expires_at=timezone.now() + timedelta(1)
    )
    task.refresh_from_db()
    return task


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL runs on PostgreSQL")
def test_the_ranking_claim_statement_picks_what_the_orm_picks():
    project = ProjectFactory(slug="agree", rankings_per_set=3, max_open_tasks=2)
    people = trainers(project, 4)
    sets = [
        make_ranking_set(project, authors=[people[i % 2]] if i % 3 == 0 else []) for i in range(9)
    ]
    # Rankings already in: those sets go first, and their rankers are never offered them again.
    for ranking_set, ranker in ((sets[4], people[2]), (sets[7], people[3]), (sets[7], people[2])):
        rank(hold(ranking_set.tasks.filter(state=Task.State.OPEN).first(), ranker), ranker)
    # A skipped slot keeps its trainer off every slot of that set.
    TaskSkip.objects.create(task=sets[5].tasks.first(), user=people[1])
    # A task held of another kind counts towards the limit but is not resumed.
    hold(Task.objects.create(project=project, kind=Task.Kind.DEMONSTRATION), people[0])
    assert claims_agree_with_the_orm(project, people, "ranking") > 20


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL runs on PostgreSQL")
def test_the_demonstration_claim_statement_picks_what_the_orm_picks():
    project = ProjectFactory(slug="prompts")
    people = trainers(project, 3)
    prompts, anchors = [], []
    for i in range(8):
        conversation = Conversation.objects.create(project=project, source="prompt")
        root = Message.objects.create(conversation=conversation, role="user", text=f"Prompt {i}")
        reply = Message.objects.create(
            conversation=conversation, parent=root, role="assistant", text="A reply", depth=1
        )
        anchor = reply if i % 2 else root
        prompts.append(root)
        anchors.append(anchor)
        Task.objects.create(
            project=project, kind=Task.Kind.DEMONSTRATION, conversation=conversation, message=anchor
        )
    Task.objects.create(project=project, kind=Task.Kind.DEMONSTRATION)  # a blank one
    # Open and upheld reports keep a prompt out, by the anchor or by the conversation's root;
    # a dismissed one does not.
    for prompt, state in (
        (prompts[1], PromptReport.State.OPEN),
        (prompts[2], PromptReport.State.UPHELD),
        (prompts[3], PromptReport.State.DISMISSED),
        (anchors[5], PromptReport.State.OPEN),
    ):
        PromptReport.objects.create(project=project, message=prompt, reason="pii", state=state)
    TaskSkip.objects.create(task=Task.objects.get(message=prompts[4]), user=people[0])
    assert claims_agree_with_the_orm(project, people, "demonstration") > 10
