"""Concurrent claims on PostgreSQL: real threads, each with its own connection and transactions.

SKIP LOCKED is what keeps two trainers from being handed the same slot; SQLite has no row locks
(it serialises whole-database writes), so these tests run on PostgreSQL only.
"""

import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connection, connections

from annotations.models import Ranking, RankingSet
from labelling.claims import task_claim_next, task_submit
from labelling.leases import TaskConflict
from labelling.models import Task
from tests.factories import (
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    candidate_ids,
    make_ranking_set,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks with SKIP LOCKED need PostgreSQL (set DATABASE_URL to a PostgreSQL one)",
    ),
]

THREADS = 12


def run_in_threads(work, people) -> tuple[dict, list]:
    """Run work(person) in one thread per person, all released at once; results by username."""
    barrier = threading.Barrier(len(people))
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def body(person):
        try:
            barrier.wait(timeout=30)
            results[person.username] = work(person)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=body, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a claim never finished"
    close_old_connections()
    return results, errors


def setup_project(trainers: int, sets: int, needed: int):
    project = ProjectFactory(slug="busy", max_open_tasks=3)
    people = [
        MembershipFactory(project=project, user=UserFactory(username=f"c{i}"), role="trainer").user
        for i in range(trainers)
    ]
    for _ in range(sets):
        make_ranking_set(project, needed=needed)
    return project, people


def test_concurrent_claims_never_hand_out_the_same_slot():
    project, people = setup_project(trainers=THREADS, sets=6, needed=3)  # 18 slots

    results, errors = run_in_threads(
        lambda person: task_claim_next(project=project, user=person, kind="ranking").pk, people
    )

    assert not errors, errors
    claimed = list(results.values())
    assert len(claimed) == THREADS and len(set(claimed)) == THREADS  # every claim distinct
    tasks = Task.objects.filter(pk__in=claimed)
    assert all(t.state == "assigned" for t in tasks)
    assert {t.assignee.username: t.pk for t in tasks.select_related("assignee")} == results
    assert Task.objects.filter(state="assigned").count() == THREADS
    # The sets already being ranked fill first: 12 claims take 4 whole sets, not 12 partial ones.
    per_set = Counter(tasks.values_list("ranking_set_id", flat=True))
    assert sorted(per_set.values()) == [3, 3, 3, 3]


def test_more_trainers_than_slots_each_slot_goes_to_one():
    project, people = setup_project(trainers=THREADS, sets=1, needed=3)

    def claim(person):
        task = task_claim_next(project=project, user=person, kind="ranking")
        return task.pk if task else None

    results, errors = run_in_threads(claim, people)

    assert not errors, errors
    claimed = [pk for pk in results.values() if pk is not None]
    assert len(claimed) == 3 and len(set(claimed)) == 3
    assert list(results.values()).count(None) == THREADS - 3
    assert Task.objects.filter(state="open").count() == 0


def test_trainers_ranking_until_the_pool_is_empty_fill_every_set_exactly():
    project, people = setup_project(trainers=8, sets=5, needed=3)  # 15 slots

    def rank_until_done(person):
        ranked = []
        while (task := task_claim_next(project=project, user=person, kind="ranking")) is not None:
            ids = candidate_ids(task.ranking_set)
            task_submit(task_id=task.pk, user=person, data={"order": [[i] for i in ids]})
            ranked.append(task.pk)
        return ranked

    results, errors = run_in_threads(rank_until_done, people)

    assert not errors, errors
    done = [pk for ranked in results.values() for pk in ranked]
    assert len(done) == len(set(done)) == 15
    assert Task.objects.filter(state="done").count() == 15
    assert Ranking.objects.count() == 15
    # No trainer ranked a set twice (the database would refuse it, and eligibility prevents it).
    pairs = list(Ranking.objects.values_list("ranking_set_id", "annotator_id"))
    assert len(pairs) == len(set(pairs))
    for ranking_set in RankingSet.objects.all():
        assert ranking_set.rankings_count == 3 == ranking_set.rankings.count()
        assert ranking_set.state == "complete" and ranking_set.consensus is not None


def claim_while_another_is_uncommitted(project, trainer, first_kind, second_kind):
    """Claim `first_kind` in a transaction held open while the same trainer claims `second_kind`.

    Returns (first task, second task or the exception it raised); asserts the second waited.
    """
    from django.db import transaction

    first_claimed, release, claimed = threading.Event(), threading.Event(), {}

    def first():
        try:
            with transaction.atomic():
                claimed["first"] = task_claim_next(project=project, user=trainer, kind=first_kind)
                first_claimed.set()
                release.wait(timeout=30)  # still uncommitted while the second claim runs
        finally:
            connections.close_all()

    def second():
        try:
            claimed["second"] = task_claim_next(project=project, user=trainer, kind=second_kind)
        except TaskConflict as exc:
            claimed["second"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_claimed.wait(timeout=30)
    threads[1].start()
    threads[1].join(timeout=1)
    assert threads[1].is_alive(), "the second claim did not wait for the first"
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    close_old_connections()
    return claimed["first"], claimed["second"]


def test_two_claims_of_one_trainer_at_once_resume_one_task():
    """A double click: the second claim waits for the first, then gets the same task back."""
    project, [trainer] = setup_project(trainers=1, sets=2, needed=3)
    project.max_open_tasks = 2
    project.save(update_fields=["max_open_tasks"])

    # The first claim is not committed yet, so the second would not see it as held: without
    # the per-trainer claim lock it would take another slot, possibly of the same set.
    first, second = claim_while_another_is_uncommitted(project, trainer, "ranking", "ranking")

    assert first is not None and second is not None and first.pk == second.pk
    assert Task.objects.filter(assignee=trainer, state="assigned").count() == 1


def test_two_claims_of_one_trainer_at_once_keep_the_open_task_limit():
    project, [trainer] = setup_project(trainers=1, sets=1, needed=3)  # max_open_tasks = 3
    project.max_open_tasks = 1
    project.save(update_fields=["max_open_tasks"])

    # A demonstration claim made while the ranking claim is still uncommitted: it must count
    # the ranking task, or the trainer would end up holding two tasks with a limit of one.
    first, second = claim_while_another_is_uncommitted(project, trainer, "ranking", "demonstration")

    assert first is not None and first.kind == "ranking"
    assert isinstance(second, TaskConflict) and second.code == "task_limit"
    assert list(Task.objects.filter(assignee=trainer).values_list("kind", flat=True)) == ["ranking"]
