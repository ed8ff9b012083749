"""The "ranking" task kind through the shared lifecycle: who gets which set, and what is stored."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotations.models import Message, Ranking, RankingSet
from labelling.claims import task_describe, task_skip, task_submit
from labelling.leases import TaskConflict
from labelling.models import Task, TaskSkip
from labelling.services import task_leases_expire
from tests.factories import (
    candidate_ids,
    claim,
    make_ranking_set,
    rank,
    trainers,
)

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------------------- claiming


def test_claim_describes_the_context_candidates_and_flag_labels(project, trainer):
    ranking_set = make_ranking_set(project, turns=3)
    task = claim(project, trainer)
    assert task.ranking_set == ranking_set and task.state == "assigned"
    assert task.assignee == trainer and task.lease_expires_at > timezone.now()

    described = task_describe(task)
    assert described["kind"] == "ranking" and described["ranking_set"] == ranking_set.pk
    assert [t["role"] for t in described["context"]] == ["user", "assistant", "user"]
    assert described["context"][-1] == {
        "id": ranking_set.context_id,
        "role": "user",
        "content": "Turn 3 (user)",
    }
    assert sorted(c["id"] for c in described["candidates"]) == candidate_ids(ranking_set)
    assert all(c["content"].startswith("Candidate reply") for c in described["candidates"])
    # Only the schema's yes/no flags; the Likert "quality" label is not a flag.
    assert [label["name"] for label in described["labels"]] == [
        "harmful", "untruthful", "fails_instruction", "pii", "wrong_language",
    ]  # fmt: skip


def test_candidates_are_shuffled_per_trainer_and_stable_for_each(project):
    ranking_set = make_ranking_set(project, k=7, needed=6)
    people = trainers(project, 6)
    orders = {}
    for person in people:
        task = claim(project, person)
        first = [c["id"] for c in task_describe(task)["candidates"]]
        again = [c["id"] for c in task_describe(Task.objects.get(pk=task.pk))["candidates"]]
        assert first == again  # a reload shows the same order
        assert sorted(first) == candidate_ids(ranking_set)
        orders[person.pk] = tuple(first)
    assert len(set(orders.values())) > 1  # 7! orders: six trainers do not all share one


def test_authors_never_get_their_own_sets(project):
    author, context_writer, candidate_writer, other = trainers(project, 4)
    make_ranking_set(project, authors=[author])
    make_ranking_set(project, context_author=context_writer)
    make_ranking_set(project, candidate_author=candidate_writer)

    assert claim(project, author).ranking_set.authors.filter(pk=author.pk).count() == 0
    own_context = claim(project, context_writer).ranking_set
    assert own_context.context.author_user_id != context_writer.pk
    own_candidate = claim(project, candidate_writer).ranking_set
    assert not own_candidate.candidates.filter(author_user=candidate_writer).exists()

    # With only their own sets left, an author gets nothing rather than their own work.
    Task.objects.exclude(ranking_set__authors=author).update(state=Task.State.CANCELLED)
    assert claim(project, author) is None
    assert claim(project, other).ranking_set.authors.filter(pk=author.pk).exists()


def test_a_trainer_never_gets_a_set_twice(project, trainer):
    first_set = make_ranking_set(project, needed=3)
    task = claim(project, trainer)
    rank(task, trainer)
    # Two more slots of the same set are open, but not for this trainer.
    assert claim(project, trainer) is None
    second_set = make_ranking_set(project, needed=3)
    assert claim(project, trainer).ranking_set == second_set
    assert Task.objects.filter(ranking_set=first_set, state="open").count() == 2


def test_a_skipped_set_is_not_offered_again(project, trainer):
    ranking_set = make_ranking_set(project, needed=2)
    task = claim(project, trainer)
    task_skip(task_id=task.pk, user=trainer, reason="not my language")
    assert TaskSkip.objects.filter(task=task, user=trainer).exists()
    # Neither the skipped slot nor the set's other slot comes back to them.
    assert claim(project, trainer) is None
    other = trainers(project, 1, prefix="o")[0]
    assert claim(project, other).ranking_set == ranking_set


def test_sets_already_started_go_first_then_the_oldest(project):
    early_helper, late_helper, trainer = trainers(project, 3)
    oldest = make_ranking_set(project)
    started = make_ranking_set(project)
    newest = make_ranking_set(project)
    RankingSet.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(hours=3))
    RankingSet.objects.filter(pk=started.pk).update(created_at=timezone.now() - timedelta(hours=2))
    RankingSet.objects.filter(pk=newest.pk).update(created_at=timezone.now() - timedelta(hours=1))

    # Someone ranks the middle set: it now goes before the older, untouched one.
    started_task = Task.objects.filter(ranking_set=started).first()
    started_task.state, started_task.assignee = Task.State.ASSIGNED, early_helper
    started_task.lease_expires_at = timezone.now() + timedelta(minutes=5)
    started_task.save()
    rank(started_task, early_helper)

    assert claim(project, trainer).ranking_set == started
    assert claim(project, late_helper).ranking_set == started
    third = trainers(project, 1, prefix="x")[0]
    assert claim(project, third).ranking_set == oldest  # equal counts: the oldest set first


@pytest.mark.parametrize("state", ["sampling", "complete", "cancelled"])
def test_only_sets_collecting_rankings_are_offered(project, trainer, state):
    make_ranking_set(project, state=state)
    assert claim(project, trainer) is None


def test_a_trainer_holds_at_most_the_projects_number_of_open_tasks(project, trainer):
    project.max_open_tasks = 1
    project.save(update_fields=["max_open_tasks"])
    make_ranking_set(project)
    Task.objects.create(
        project=project,
        kind=Task.Kind.DEMONSTRATION,
        state=Task.State.ASSIGNED,
        assignee=trainer,
        assigned_at=timezone.now(),
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    with pytest.raises(TaskConflict) as caught:
        claim(project, trainer)
    assert caught.value.code == "task_limit"
    assert not Task.objects.filter(kind="ranking", assignee=trainer).exists()


def test_claiming_again_resumes_the_held_task(project, trainer):
    make_ranking_set(project)
    make_ranking_set(project)
    first = claim(project, trainer)
    assert claim(project, trainer) == first
    assert Task.objects.filter(assignee=trainer).count() == 1


def test_an_expired_lease_returns_the_slot_to_the_pool(project):
    slow, waiting = trainers(project, 2)
    make_ranking_set(project, needed=1)
    task = claim(project, slow)
    assert claim(project, waiting) is None  # the only slot is taken

    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert task_leases_expire() == 1
    assert claim(project, waiting) == task

    with pytest.raises(TaskConflict) as caught:
        rank(task, slow)
    assert caught.value.code == "task_not_held"
    rank(task, waiting)
    assert Ranking.objects.get().annotator == waiting


# ---------------------------------------------------------------------------- submitting


def test_submit_stores_order_ties_flags_and_time(project, trainer):
    ranking_set = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    task = claim(project, trainer)
    done = task_submit(
        task_id=task.pk,
        user=trainer,
        data={
            "order": [[c], [d, a], [b]],
            "flags": {str(b): ["untruthful", "harmful"], str(a): []},
            "all_bad": False,
            "rewrite": None,
            "time_spent_ms": 41_500,
        },
    )
    ranking = Ranking.objects.get()
    assert done.state == "done" and done.result == {"ranking": ranking.pk}
    assert ranking.annotator == trainer and ranking.ranking_set == ranking_set
    assert ranking.order == [[c], sorted([a, d]), [b]]
    assert ranking.flags == {str(b): ["harmful", "untruthful"]}  # schema order, empties dropped
    assert ranking.all_bad is False and ranking.rewrite is None
    assert ranking.time_spent_ms == 41_500
    ranking_set.refresh_from_db()
    assert ranking_set.rankings_count == 1 and ranking_set.state == "collecting"


def test_a_rewrite_is_a_human_reply_beside_the_candidates(project, trainer):
    ranking_set = make_ranking_set(project)
    task = claim(project, trainer)
    rank(task, trainer, all_bad=True, rewrite={"content": "A much better reply."})
    ranking = Ranking.objects.get()
    rewrite = ranking.rewrite
    assert ranking.all_bad is True
    assert rewrite.parent_id == ranking_set.context_id and rewrite.role == "assistant"
    assert rewrite.author_user == trainer and rewrite.is_synthetic is False
    assert rewrite.text == "A much better reply."
    assert not ranking_set.entries.filter(message=rewrite).exists()  # not ranked in this set
    assert Task.objects.get(pk=task.pk).result == {"ranking": ranking.pk, "rewrite": rewrite.pk}


def test_a_rewrite_in_the_old_text_shape_is_still_read(project, trainer):
    make_ranking_set(project)
    task = claim(project, trainer)
    rank(task, trainer, rewrite={"text": "Sent by an older client."})
    assert Ranking.objects.get().rewrite.text == "Sent by an older client."


def test_a_candidate_is_a_message_with_role_and_content(project, trainer):
    make_ranking_set(project)
    described = task_describe(claim(project, trainer))
    assert {tuple(sorted(c)) for c in described["candidates"]} == {("content", "id", "role")}
    assert {c["role"] for c in described["candidates"]} == {"assistant"}


def test_submitting_twice_stores_one_ranking(project, trainer):
    ranking_set = make_ranking_set(project)
    task = claim(project, trainer)
    first = rank(task, trainer, rewrite={"content": "Better."})
    second = rank(task, trainer, rewrite={"content": "Better."})
    assert first.result == second.result
    assert Ranking.objects.count() == 1
    assert Message.objects.filter(author_user=trainer).count() == 1
    ranking_set.refresh_from_db()
    assert ranking_set.rankings_count == 1


def _bad_submissions(ids):
    a, b, c, d = ids
    return {
        "missing": ({"order": [[a], [b], [c]]}, "order", f"missing {d}"),
        "unknown": ({"order": [[a], [b], [c], [d, 999999]]}, "order", "not candidates"),
        "repeated": ({"order": [[a], [b, a], [c], [d]]}, "order", f"repeated {a}"),
        "flat": ({"order": [a, b, c, d]}, "order", "list of groups"),
        "empty group": ({"order": [[a], [], [b], [c], [d]]}, "order", "list of groups"),
        "no order": ({}, "order", "list of groups"),
        "unknown flag": ({"flags": {str(a): ["toxic"]}}, "flags", "'toxic'"),
        "likert as flag": ({"flags": {str(a): ["quality"]}}, "flags", "'quality'"),
        "flag elsewhere": ({"flags": {"999999": ["harmful"]}}, "flags", "999999"),
        "flags shape": ({"flags": ["harmful"]}, "flags", "object"),
        "all_bad": ({"all_bad": "yes"}, "all_bad", "true or false"),
        "rewrite shape": ({"rewrite": "text"}, "rewrite", "null or"),
        "empty rewrite": ({"rewrite": {"content": "  "}}, "rewrite", "empty"),
        "rewrite as user": (
            {"rewrite": {"role": "user", "content": "x"}},
            "rewrite",
            "role is assistant",
        ),
        "rewrite extra": ({"rewrite": {"content": "x", "text": "y"}}, "rewrite", "unexpected"),
        "negative time": ({"time_spent_ms": -1}, "time_spent_ms", "0 or more"),
        "time as text": ({"time_spent_ms": "12"}, "time_spent_ms", "whole number"),
        "typo": ({"flag": {}}, "flag", "Unexpected field"),
    }


@pytest.mark.parametrize("case", list(_bad_submissions([1, 2, 3, 4])))
def test_bad_submissions_name_the_field_and_store_nothing(project, trainer, case):
    ranking_set = make_ranking_set(project)
    ids = candidate_ids(ranking_set)
    body, field, says = _bad_submissions(ids)[case]
    data = {"order": [[i] for i in ids], **body}
    if case == "no order":
        data.pop("order")
    task = claim(project, trainer)
    messages_before = Message.objects.count()
    with pytest.raises(ValidationError) as caught:
        task_submit(task_id=task.pk, user=trainer, data=data)
    assert list(caught.value.message_dict) == [field]
    assert says in " ".join(caught.value.message_dict[field])
    assert Ranking.objects.count() == 0 and Message.objects.count() == messages_before
    task.refresh_from_db()
    ranking_set.refresh_from_db()
    assert task.state == "assigned" and ranking_set.rankings_count == 0


def test_every_bad_field_is_reported_at_once(project, trainer):
    ranking_set = make_ranking_set(project)
    task = claim(project, trainer)
    with pytest.raises(ValidationError) as caught:
        task_submit(
            task_id=task.pk,
            user=trainer,
            data={"order": [[candidate_ids(ranking_set)[0]]], "flags": {"x": ["harmful"]}},
        )
    assert set(caught.value.message_dict) == {"order", "flags"}


def test_a_set_is_finalized_when_its_nth_ranking_arrives(project):
    first, second = trainers(project, 2)
    ranking_set = make_ranking_set(project, needed=2, tasks=3)
    a, b, c, d = candidate_ids(ranking_set)
    for person, order in ((first, [[b], [a], [c], [d]]), (second, [[b], [a], [d], [c]])):
        task = claim(project, person)
        task_submit(task_id=task.pk, user=person, data={"order": order})
        ranking_set.refresh_from_db()
    assert ranking_set.rankings_count == 2
    assert ranking_set.state == "complete" and ranking_set.completed_at is not None
    assert ranking_set.consensus[:2] == [[b], [a]]
    assert 0 <= ranking_set.agreement <= 1
    # The spare slot is no longer needed.
    assert list(Task.objects.filter(ranking_set=ranking_set).values_list("state", flat=True)) == [
        "done", "done", "cancelled",
    ]  # fmt: skip


def test_a_cancelled_set_refuses_rankings(project, trainer):
    ranking_set = make_ranking_set(project)
    task = claim(project, trainer)
    RankingSet.objects.filter(pk=ranking_set.pk).update(state=RankingSet.State.CANCELLED)
    with pytest.raises(TaskConflict) as caught:
        rank(task, trainer)
    assert caught.value.code == "set_cancelled"
    assert Ranking.objects.count() == 0


def test_a_complete_set_takes_no_more_rankings(project):
    first, second = trainers(project, 2)
    ranking_set = make_ranking_set(project, needed=1, tasks=2)
    task = claim(project, first)
    late = claim(project, second)
    rank(task, first)
    with pytest.raises(TaskConflict) as caught:
        rank(late, second)
    assert caught.value.code == "set_not_collecting"
    assert Ranking.objects.filter(ranking_set=ranking_set).count() == 1
