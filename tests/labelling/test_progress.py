"""A trainer's home: counts by kind and period, the ranking queue and why it is empty, recent
submissions (only the trainer's own), and the page with its 404/403 matrix and htmx polling."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotations.models import Conversation, Message, RankingSet
from annotations.services import conversation_start
from labelling.claims import task_claim_next, task_skip, task_submit
from labelling.models import RankingSetSampling, Task
from labelling.progress import (
    period_starts,
    ranking_queue,
    recent_submissions,
    trainer_home,
    work_counts,
)
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    claim,
    make_ranking_set,
    rank,
)
from trainer_bridge.models import GenerationRequest

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _done(project, user, kind, done_at, **fields) -> Task:
    if kind == Task.Kind.RANKING and "ranking_set" not in fields:
        fields["ranking_set"] = make_ranking_set(project, tasks=0)
    return Task.objects.create(
        project=project, kind=kind, state=Task.State.DONE, assignee=user, done_at=done_at, **fields
    )


def _sampling_set(project, *, queued_ago: timedelta = timedelta(minutes=1)) -> RankingSet:
    """A set waiting for its candidates, with one queued request."""
    _, context = conversation_start(project=project, text="Tell me a joke.", source="prompt")
    ranking_set = RankingSet.objects.create(
        project=project, context=context, state=RankingSet.State.SAMPLING
    )
    request = GenerationRequest.objects.create(
        project=project,
        context=context,
        model_version=project.candidate_models.first() or ModelVersionFactory(),
        purpose=GenerationRequest.Purpose.CANDIDATES,
        n=4,
    )
    GenerationRequest.objects.filter(pk=request.pk).update(queued_at=timezone.now() - queued_ago)
    RankingSetSampling.objects.create(ranking_set=ranking_set, generation_request=request)
    return ranking_set


def _finished_request(project, seconds: int) -> None:
    """A candidates request that took `seconds` from queue to done."""
    _, context = conversation_start(project=project, text="Earlier.", source="prompt")
    request = GenerationRequest.objects.create(
        project=project,
        context=context,
        model_version=project.candidate_models.first(),
        purpose=GenerationRequest.Purpose.CANDIDATES,
        state=GenerationRequest.State.DONE,
    )
    finished = timezone.now() - timedelta(hours=1)
    GenerationRequest.objects.filter(pk=request.pk).update(
        queued_at=finished - timedelta(seconds=seconds), finished_at=finished
    )


@pytest.fixture
def candidates(project):
    project.candidate_models.add(ModelVersionFactory(name="cand-a"))
    return project


# ---------------------------------------------------------------- counts


def test_counts_split_today_and_this_week_by_kind(project, trainer, lead):
    today, week = period_starts()
    now = timezone.now()
    _done(project, trainer, Task.Kind.DEMONSTRATION, now)
    _done(project, trainer, Task.Kind.DEMONSTRATION, today + timedelta(seconds=1))
    _done(project, trainer, Task.Kind.RANKING, now)
    _done(project, trainer, Task.Kind.RANKING, week + timedelta(seconds=1))
    _done(project, trainer, Task.Kind.RANKING, week - timedelta(seconds=1))  # last week
    _done(project, lead, Task.Kind.DEMONSTRATION, now)  # someone else's
    Task.objects.create(  # held, not done
        project=project,
        kind=Task.Kind.DEMONSTRATION,
        state=Task.State.ASSIGNED,
        assignee=trainer,
        lease_expires_at=now + timedelta(minutes=5),
    )
    counts = {c.kind: c for c in work_counts(user=trainer, project=project)}
    assert [c.kind for c in work_counts(user=trainer, project=project)] == [
        "demonstration",
        "ranking",
    ]
    assert (counts["demonstration"].today, counts["demonstration"].week) == (2, 2)
    # The one from the start of this week counts today as well only on a Monday.
    monday = today == week
    assert (counts["ranking"].today, counts["ranking"].week) == (2 if monday else 1, 2)


def test_period_starts_are_midnight_and_monday():
    today, week = period_starts(timezone.now())
    assert (today.hour, today.minute, today.second) == (0, 0, 0)
    assert week.weekday() == 0 and week <= today < week + timedelta(days=7)


# ---------------------------------------------------------------- the ranking queue


def test_a_ready_set_is_counted_once_and_not_empty(project, trainer):
    make_ranking_set(project, tasks=3)
    queue = ranking_queue(user=trainer, project=project)
    assert queue.ready == 1 and not queue.is_empty and queue.reasons() == []
    assert queue.ready_text == "1"


def test_ready_sets_are_counted_up_to_a_cap(project, trainer, monkeypatch):
    monkeypatch.setattr("labelling.progress.READY_COUNT_CAP", 2)
    for _ in range(3):
        make_ranking_set(project, tasks=1)
    queue = ranking_queue(user=trainer, project=project)
    assert queue.ready == 2 and queue.ready_text == "2+"


def test_empty_queue_says_sets_are_sampling_and_when_the_next_is_expected(candidates, trainer):
    project = candidates
    _finished_request(project, 120)
    _finished_request(project, 240)
    _finished_request(project, 600)
    _sampling_set(project, queued_ago=timedelta(minutes=1))
    queue = ranking_queue(user=trainer, project=project)
    assert queue.is_empty and queue.sampling == 1 and queue.requests_waiting == 1
    # Median 240 s after the oldest waiting request was queued (1 minute ago): in about 3 min.
    assert abs((queue.expected_at - timezone.now()).total_seconds() - 180) < 5
    text = " ".join(queue.reasons())
    assert "1 set is being sampled (1 generation request queued or running)" in text
    assert "in about 3 min" in text


def test_without_history_there_is_no_estimate(candidates, trainer):
    _sampling_set(candidates)
    queue = ranking_queue(user=trainer, project=candidates)
    assert queue.expected_at is None
    assert "no estimate yet" in " ".join(queue.reasons())


def test_an_overdue_estimate_says_any_moment(candidates, trainer):
    _finished_request(candidates, 30)
    _sampling_set(candidates, queued_ago=timedelta(minutes=5))
    assert "any moment now" in " ".join(ranking_queue(user=trainer, project=candidates).reasons())


def test_empty_queue_names_sets_the_trainer_may_not_rank(project, trainer):
    mine = make_ranking_set(project, tasks=2, authors=[trainer])  # wrote part of it
    skipped = make_ranking_set(project, tasks=2)
    task = claim(project, trainer)
    assert task.ranking_set == skipped
    task_skip(task_id=task.pk, user=trainer)
    ranked = make_ranking_set(project, tasks=2, needed=2)
    rank(claim(project, trainer), trainer)
    queue = ranking_queue(user=trainer, project=project)
    assert mine.state == ranked.state == "collecting"
    assert queue.ready == 0 and queue.not_for_you == 3
    reasons = queue.reasons()
    assert any("3 sets are collecting rankings that you have ranked" in r for r in reasons)
    project.candidate_models.add(ModelVersionFactory(name="cand-b"))
    reasons = ranking_queue(user=trainer, project=project).reasons()
    assert any("No sets are being sampled right now" in r for r in reasons)


def test_no_candidate_models_and_paused_project_are_said(project, trainer):
    assert "no candidate models" in " ".join(ranking_queue(user=trainer, project=project).reasons())
    project.is_active = False
    project.save(update_fields=["is_active"])
    assert "paused" in " ".join(ranking_queue(user=trainer, project=project).reasons())


def test_a_held_ranking_is_not_an_empty_queue(project, trainer):
    make_ranking_set(project)
    task = claim(project, trainer)
    queue = ranking_queue(user=trainer, project=project)
    assert queue.held == task and not queue.is_empty


# ---------------------------------------------------------------- recent submissions


def test_recent_rankings_show_only_the_trainers_own_order(project, trainer):
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    ranking_set = make_ranking_set(project, texts=["Alpha reply", "Beta", "Gamma", "Delta"])
    theirs = claim(project, other)
    ids = list(ranking_set.entries.order_by("position").values_list("message_id", flat=True))
    task_submit(task_id=theirs.pk, user=other, data={"order": [[i] for i in reversed(ids)]})
    mine = claim(project, trainer)
    task_submit(
        task_id=mine.pk, user=trainer, data={"order": [[ids[0], ids[1]], [ids[2]], [ids[3]]]}
    )
    [item] = recent_submissions(user=trainer, project=project)
    assert item.task == Task.objects.get(pk=mine.pk)
    assert item.lines == ["1. Alpha reply = Beta", "2. Gamma", "3. Delta"]
    assert "Turn 1" in item.summary


def test_recent_demonstrations_say_what_was_written(project, trainer):
    _, prompt = conversation_start(
        project=project, text="How do plants drink?", source=Conversation.Source.PROMPT
    )
    task = task_claim_next(project=project, user=trainer, kind="demonstration")
    task_submit(
        task_id=task.pk,
        user=trainer,
        data={"turns": [{"role": "assistant", "text": "Through their roots, mostly."}]},
    )
    [item] = recent_submissions(user=trainer, project=project)
    assert item.summary == "Wrote 1 turn: “Through their roots, mostly.”"
    assert Message.objects.filter(text="Through their roots, mostly.").exists()


# ---------------------------------------------------------------- the page


def test_page_access_matrix(client, project, trainer, lead, engineer, outsider):
    url = reverse("trainer-home", args=["alpha"])
    assert client.get(url).status_code == 302  # to the login page
    for user, expected in ((trainer, 200), (lead, 200), (engineer, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(url).status_code == expected, user
        assert client.get(url, **HTMX).status_code == expected, user
    client.force_login(trainer)
    assert client.get(reverse("trainer-home", args=["nope"])).status_code == 404
    assert client.post(url).status_code == 405


def test_page_shows_counts_queues_held_tasks_and_recent_work(client, project, trainer):
    make_ranking_set(project, texts=["<b>first</b>", "second", "third", "fourth"])
    task = claim(project, trainer)
    rank(task, trainer)
    make_ranking_set(project)
    held = claim(project, trainer)
    client.force_login(trainer)
    page = client.get(reverse("trainer-home", args=["alpha"])).content.decode()
    assert '<tr data-kind="ranking"><th scope="row">Rank replies</th>' in page
    assert '<td class="count-today">1</td><td class="count-week">1</td>' in page
    assert reverse("rank-task", args=[held.pk]) in page  # the task held, to continue
    assert "&lt;b&gt;first&lt;/b&gt;" in page and "<b>first</b>" not in page  # escaped
    assert f'data-task="{task.pk}"' in page


# Session, user, membership; the held tasks; the queues (7); the counts; the recent work (3);
# the ranking queue (5). The held ranking task comes out of the held tasks, not a read of its own.
HOME_QUERIES = 20


def test_the_page_reads_the_held_ranking_task_once(
    client, project, trainer, django_assert_num_queries
):
    make_ranking_set(project)
    rank(claim(project, trainer), trainer)
    make_ranking_set(project)
    held = claim(project, trainer)
    client.force_login(trainer)
    url = reverse("trainer-home", args=["alpha"])
    client.get(url)  # the first request of a session may fill caches
    with django_assert_num_queries(HOME_QUERIES):
        response = client.get(url)
    assert response.context["ranking"].held == held
    assert reverse("rank-task", args=[held.pk]) in response.content.decode()


def test_the_home_shows_the_ranking_task_the_queue_would_read(project, trainer, lead):
    """Out of every task the trainer holds, the home's queue shows the ranking task assigned
    first, as the polled queue reads it (the two must agree, or every poll looks changed)."""
    make_ranking_set(project)
    make_ranking_set(project)
    first, second = Task.objects.filter(kind=Task.Kind.RANKING, state=Task.State.OPEN)[:2]
    now = timezone.now()
    for task, assigned_ago, lease in ((first, 5, 10), (second, 9, 30)):
        Task.objects.filter(pk=task.pk).update(
            state=Task.State.ASSIGNED,
            assignee=trainer,
            assigned_at=now - timedelta(minutes=assigned_ago),
            lease_expires_at=now + timedelta(minutes=lease),
        )
    conversation_start(project=project, text="Write one.", source="prompt")
    task_claim_next(project=project, user=trainer, kind="demonstration")
    home = trainer_home(user=trainer, project=project)
    assert home.held[0] == first  # the home lists held tasks by lease, soonest first
    assert home.ranking.held == second == ranking_queue(user=trainer, project=project).held
    assert len(home.held) == 3


def test_empty_queue_polls_and_the_fragment_shows_a_ready_set(client, project, trainer):
    client.force_login(trainer)
    url = reverse("trainer-home", args=["alpha"])
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 10s"' in page and "Nothing to rank right now" in page
    fragment = client.get(url, **HTMX).content.decode()
    assert 'id="ranking-queue"' in fragment and "<h1>" not in fragment
    assert 'hx-trigger="every 10s"' in fragment
    # A poll that finds the queue as the page shows it gets nothing to swap.
    seen = ranking_queue(user=trainer, project=project).fingerprint()
    assert f'hx-vals=\'{{"seen": "{seen}"}}\'' in fragment
    unchanged = client.get(url, {"seen": seen}, **HTMX)
    assert unchanged.status_code == 204 and unchanged.content == b""
    make_ranking_set(project)
    changed = client.get(url, {"seen": seen}, **HTMX)
    assert changed.status_code == 200 and 'id="rank-ready"' in changed.content.decode()
    fragment = client.get(url, **HTMX).content.decode()
    assert 'id="rank-ready"' in fragment and "hx-trigger" not in fragment
    assert "1 set is ready for you" in fragment


def test_home_and_project_page_link_to_the_trainer_home(client, project, trainer, engineer):
    link = reverse("trainer-home", args=["alpha"])
    client.force_login(trainer)
    assert link in client.get(reverse("home")).content.decode()
    assert link in client.get(reverse("project-detail", args=["alpha"])).content.decode()
    client.force_login(engineer)
    assert link not in client.get(reverse("home")).content.decode()
    assert link not in client.get(reverse("project-detail", args=["alpha"])).content.decode()
