"""Choosing contexts, sampling candidates with the real tiny model, and assembling ranking sets."""

import logging

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import override_settings

from annotations.models import (
    Membership,
    Message,
    PromptReport,
    RankingCandidate,
    RankingSet,
)
from annotations.reports import prompt_report_create
from annotations.services import conversation_start, message_add
from labelling import tasks
from labelling.claims import task_claim_next
from labelling.comparisons import (
    comparison_assemble,
    comparison_context_pick,
    comparison_create,
    comparisons_top_up,
    normalised_text,
    ranking_set_requests,
)
from labelling.models import Task
from tests.factories import ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationRequest
from trainer_bridge.worker import process_generation

pytestmark = pytest.mark.django_db

FAST = {"max_new_tokens": 6, "temperature": 1.0, "seed": 11}


@pytest.fixture
def models(tiny_model_paths):
    """Two candidate models (the same tiny weights under two names)."""
    return [
        ModelVersionFactory(name=name, source=str(tiny_model_paths.policy))
        for name in ("tiny-a", "tiny-b")
    ]


@pytest.fixture
def project(models):
    project = ProjectFactory(
        slug="cmp",
        replies_per_set=4,
        rankings_per_set=3,
        sampling=dict(FAST),
        include_human_reply=False,
        comparison_contexts=["prompt", "model_reply", "human_reply"],
    )
    project.candidate_models.set(models)
    return project


def _prompt(project, text="Plan a picnic for four friends.", **kwargs):
    _, root = conversation_start(project=project, text=text, source="prompt", **kwargs)
    return root


def _run(ranking_set) -> None:
    """Run the set's queued requests in-process, as a gpu worker would."""
    for request_id in (
        ranking_set_requests(ranking_set).filter(state="queued").values_list("pk", flat=True)
    ):
        process_generation(request_id)


def _settle(ranking_set, *, rounds: int = 10) -> bool:
    """Sample and assemble until the set is collecting or cancelled."""
    for _ in range(rounds):
        _run(ranking_set)
        if comparison_assemble(ranking_set=ranking_set):
            return True
        ranking_set.refresh_from_db()
        if ranking_set.state == "cancelled":
            return False
    raise AssertionError("the set never settled")


def _by_model(ranking_set) -> dict[str, list[GenerationRequest]]:
    found: dict[str, list[GenerationRequest]] = {}
    for request in ranking_set_requests(ranking_set).select_related("model_version"):
        found.setdefault(request.model_version.name, []).append(request)
    return found


def comparison_settings(**overrides):
    parley = {**settings.PARLEY, "COMPARISONS": {**settings.PARLEY["COMPARISONS"], **overrides}}
    return override_settings(PARLEY=parley)


def generation_faults(faults):
    parley = {**settings.PARLEY, "GENERATION": {**settings.PARLEY["GENERATION"], "FAULTS": faults}}
    return override_settings(PARLEY=parley)


# ---------------------------------------------------------------------------- creation


def test_creation_requests_k_candidates_across_two_models_with_their_own_params(project, lead):
    project.candidate_sampling = {"tiny-b": {"temperature": 0.5, "top_k": 20}}
    project.save()
    context = _prompt(project)

    ranking_set = comparison_create(project=project, requested_by=lead)

    assert ranking_set.state == "sampling" and ranking_set.context == context
    assert ranking_set.rankings_needed == 3
    requests = _by_model(ranking_set)
    # K = 4 over two models round-robin: two samples each.
    assert {name: sum(r.n for r in rs) for name, rs in requests.items()} == {
        "tiny-a": 2,
        "tiny-b": 2,
    }
    (a,), (b,) = requests["tiny-a"], requests["tiny-b"]
    assert a.params == {"max_new_tokens": 6, "temperature": 1.0, "seed": 11}
    # The seed moves on by the samples already asked for in this set (tiny-a's two).
    assert b.params == {"max_new_tokens": 6, "temperature": 0.5, "top_k": 20, "seed": 13}
    assert {a.purpose, b.purpose} == {"candidates"} and {a.context, b.context} == {context}
    assert a.requested_by == lead and a.state == "queued"
    assert not Task.objects.filter(ranking_set=ranking_set).exists()


def test_an_odd_k_and_the_per_request_limit_are_respected(project):
    project.replies_per_set = 7
    project.max_generations_per_request = 2
    project.save()
    _prompt(project)
    ranking_set = comparison_create(project=project)
    requests = _by_model(ranking_set)
    totals = sorted(sum(r.n for r in rs) for rs in requests.values())
    assert totals == [3, 4]  # 7 round-robin over two models
    assert all(r.n <= 2 for rs in requests.values() for r in rs)
    # No two requests of the set may draw the same seeded samples.
    seeds = [r.params["seed"] for rs in requests.values() for r in rs]
    assert len(set(seeds)) == len(seeds)


def test_creation_needs_candidate_models_and_a_context(project):
    with pytest.raises(ValidationError, match="no conversation left to compare"):
        comparison_create(project=project)
    project.candidate_models.clear()
    _prompt(project)
    with pytest.raises(ValidationError, match="no candidate models"):
        comparison_create(project=project)
    assert not RankingSet.objects.exists()


def test_a_named_context_is_checked(project):
    other = ProjectFactory(slug="other")
    _, foreign = conversation_start(project=other, text="Elsewhere?")
    with pytest.raises(ValidationError, match="another project"):
        comparison_create(project=project, context=foreign)
    context = _prompt(project)
    reply = message_add(parent=context, role="assistant", text="Sure.")
    with pytest.raises(ValidationError, match="after a user turn"):
        comparison_create(project=project, context=reply)
    comparison_create(project=project, context=context)
    with pytest.raises(ValidationError, match="already has a ranking set"):
        comparison_create(project=project, context=context)


# ---------------------------------------------------------------------------- contexts


@pytest.fixture
def one_context_of_each_kind(project, models):
    """A prompt, a user turn after a model's reply and one after a person's reply."""
    lead, writer = UserFactory(username="lee"), UserFactory(username="wanda")
    prompt = _prompt(project, "Fresh prompt from the pool?", created_by=lead)
    _, start = conversation_start(project=project, text="Tell me a story.", created_by=writer)
    model_turn = Message.objects.create(
        conversation=start.conversation,
        parent=start,
        role="assistant",
        text="Once upon a time.",
        depth=1,
        author_model=models[0],
        is_synthetic=True,
    )
    after_model = message_add(parent=model_turn, role="user", text="Go on.", author_user=writer)
    human_turn = message_add(
        parent=start, role="assistant", text="There was a fox.", author_user=writer
    )
    after_human = message_add(parent=human_turn, role="user", text="And?", author_user=writer)
    return {"prompt": prompt, "model_reply": after_model, "human_reply": after_human}


@pytest.mark.parametrize("kind", ["prompt", "model_reply", "human_reply"])
def test_the_context_is_one_of_the_kinds_the_project_allows(
    project, one_context_of_each_kind, kind
):
    project.comparison_contexts = [kind]
    project.save()
    ranking_set = comparison_create(project=project)
    assert ranking_set.context == one_context_of_each_kind[kind]
    # The only context of that kind is used now; the others are not allowed.
    with pytest.raises(ValidationError, match=f"points it allows \\({kind}\\)"):
        comparison_create(project=project)


def test_every_allowed_kind_gets_picked(project, one_context_of_each_kind):
    # Each pick uses up its context, so three picks must take one of each kind.
    picked = {comparison_create(project=project).context for _ in range(3)}
    assert picked == set(one_context_of_each_kind.values())
    assert comparison_context_pick(project=project) is None


def test_reported_prompts_and_full_conversations_are_not_picked(project):
    reported = _prompt(project, "Reported prompt.")
    prompt_report_create(project=project, message=reported, reporter=None, reason="nonsense")
    project.max_turns = 2
    project.save()
    _, deep = conversation_start(project=project, text="Hi.")
    turn = message_add(parent=deep, role="assistant", text="Hello.", author_user=None)
    # depth 2 with max_turns 2: no room for a reply (built directly; message_add would refuse).
    Message.objects.create(
        conversation=deep.conversation, parent=turn, role="user", text="More?", depth=2
    )
    assert comparison_context_pick(project=project) is None
    PromptReport.objects.filter(message=reported).update(state="dismissed")
    assert comparison_context_pick(project=project) == reported


def test_a_demonstrations_unsubmitted_scratch_is_not_compared(project):
    # A trainer's draft-in-progress: turns stored under a pool prompt, marked as scratch.
    prompt = _prompt(project, "Seed prompt.")
    scratch = {"scratch_for_task": 99}
    reply = message_add(parent=prompt, role="assistant", text="Half done.", meta=scratch)
    message_add(parent=reply, role="user", text="Then?", meta=scratch)
    _, blank = conversation_start(project=project, text="Blank task turn.", source="prompt")
    blank.conversation.meta = scratch
    blank.conversation.save()
    project.include_human_reply = True
    project.save()

    ranking_set = comparison_create(project=project)
    assert ranking_set.context == prompt
    # The scratch reply is not "the existing human reply": all K candidates are sampled.
    assert sum(r.n for r in ranking_set_requests(ranking_set).all()) == 4
    assert comparison_context_pick(project=project) is None


# ---------------------------------------------------------------------------- assembly


def test_assembly_waits_for_the_requests(project):
    _prompt(project)
    ranking_set = comparison_create(project=project)
    assert comparison_assemble(ranking_set=ranking_set) is False
    ranking_set.refresh_from_db()
    assert ranking_set.state == "sampling" and not ranking_set.entries.exists()


def test_assembly_makes_k_shuffled_candidates_n_tasks_and_records_authors(
    project, one_context_of_each_kind, mocker
):
    project.include_human_reply = True
    project.comparison_contexts = ["human_reply"]
    project.save()
    context = one_context_of_each_kind["human_reply"]
    helper = UserFactory(username="hugo")
    human = message_add(parent=context, role="assistant", text="A happy end.", author_user=helper)

    ranking_set = comparison_create(project=project)
    # K - 1 samples: the human reply is the fourth candidate.
    assert sum(r.n for r in ranking_set_requests(ranking_set).all()) == 3
    _run(ranking_set)
    # The human reply is collected first; the shuffle decides where it goes.
    shuffle = mocker.patch("labelling.comparisons.random.shuffle", side_effect=list.reverse)
    assert comparison_assemble(ranking_set=ranking_set) is True
    shuffle.assert_called_once()

    ranking_set.refresh_from_db()
    assert ranking_set.state == "collecting"
    entries = list(RankingCandidate.objects.filter(ranking_set=ranking_set).order_by("position"))
    assert [e.position for e in entries] == [0, 1, 2, 3]
    assert entries[-1].message == human
    sampled = [e.message for e in entries[:-1]]
    assert all(m.is_synthetic and m.parent_id == context.pk for m in sampled)
    assert len({normalised_text(e.message.text) for e in entries}) == 4
    # Authors: the writer of the thread and the author of the human candidate.
    assert set(ranking_set.authors.values_list("username", flat=True)) == {"wanda", "hugo"}
    ranking_tasks = Task.objects.filter(ranking_set=ranking_set)
    assert ranking_tasks.count() == 3
    assert {(t.kind, t.state, t.project_id) for t in ranking_tasks} == {
        ("ranking", "open", project.pk)
    }

    # Again: nothing changes.
    assert comparison_assemble(ranking_set=ranking_set) is True
    assert ranking_set.entries.count() == 4 and ranking_tasks.count() == 3

    # Neither writer is offered the set; anyone else is.
    for username in ("wanda", "hugo", "rita"):
        user = User.objects.filter(username=username).first() or UserFactory(username=username)
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": "trainer"})
        task = task_claim_next(project=project, user=user, kind="ranking")
        assert (task is not None) == (username == "rita"), username


def test_the_human_reply_is_left_out_unless_the_project_asks(project, one_context_of_each_kind):
    project.comparison_contexts = ["human_reply"]
    project.save()
    context = one_context_of_each_kind["human_reply"]
    message_add(parent=context, role="assistant", text="A happy end.", author_user=None)
    ranking_set = comparison_create(project=project)
    assert sum(r.n for r in ranking_set_requests(ranking_set).all()) == 4
    assert _settle(ranking_set)
    assert all(m.is_synthetic for m in ranking_set.candidates.all())


def test_duplicates_are_dropped_and_re_sampled(project):
    project.replies_per_set = 3
    project.candidate_models.set(project.candidate_models.filter(name="tiny-a"))
    # Greedy decoding: every sample of the first round is the same reply.
    project.candidate_sampling = {"tiny-a": {"temperature": 0.0}}
    project.save()
    _prompt(project)
    ranking_set = comparison_create(project=project)
    _run(ranking_set)
    texts = set(
        Message.objects.filter(
            generation_output__request__ranking_set_samplings__ranking_set=ranking_set
        ).values_list("text", flat=True)
    )
    assert len(texts) == 1

    # One distinct reply of three: ask for two more (now with sampling switched on).
    project.candidate_sampling = {"tiny-a": {"temperature": 1.2}}
    project.save()
    assert comparison_assemble(ranking_set=ranking_set) is False
    ranking_set.refresh_from_db()
    assert ranking_set.state == "sampling"
    resample = ranking_set_requests(ranking_set).get(state="queued")
    assert resample.n == 2 and resample.params["temperature"] == 1.2
    # The configured seed moves on by the three samples already drawn.
    assert resample.params["seed"] == FAST["seed"] + 3

    _run(ranking_set)
    assert comparison_assemble(ranking_set=ranking_set) is True
    ranking_set.refresh_from_db()
    assert ranking_set.resamples == 1 and ranking_set.cancel_reason == ""
    candidates = list(ranking_set.candidates.all())
    assert len(candidates) == 3
    assert len({normalised_text(m.text) for m in candidates}) == 3
    assert texts < {m.text for m in candidates}  # the greedy reply stays, once


def test_re_samples_go_to_the_models_that_did_not_repeat_themselves(project):
    project.candidate_sampling = {"tiny-a": {"temperature": 0.0}}
    project.save()
    _prompt(project)
    ranking_set = comparison_create(project=project)
    _run(ranking_set)
    # tiny-a gave the same reply twice; tiny-b two different ones: 3 distinct of 4.
    assert comparison_assemble(ranking_set=ranking_set) is False
    resample = ranking_set_requests(ranking_set).get(state="queued")
    assert (resample.model_version.name, resample.n) == ("tiny-b", 1)
    assert _settle(ranking_set)
    assert ranking_set.entries.count() == 4


def test_a_set_that_keeps_getting_duplicates_is_cancelled_after_its_budget(project, caplog):
    project.replies_per_set = 2
    project.candidate_sampling = {"tiny-a": {"temperature": 0.0}, "tiny-b": {"temperature": 0.0}}
    project.candidate_models.set(project.candidate_models.filter(name="tiny-a"))
    project.save()
    _prompt(project)
    ranking_set = comparison_create(project=project)
    with comparison_settings(MAX_SAMPLES_PER_CANDIDATE=3), caplog.at_level(logging.WARNING):
        assert _settle(ranking_set) is False
    ranking_set.refresh_from_db()
    assert ranking_set.state == "cancelled"
    # 2 + 1 + 1 + 1 + 1 = 6 = 3 x K samples, all the same greedy reply.
    assert sum(r.n for r in ranking_set_requests(ranking_set).all()) == 6
    assert ranking_set.resamples == 4
    assert "keep repeating themselves" in caplog.text
    assert ranking_set.cancel_reason.startswith("Cancelled because 1 distinct replies of 2")
    assert not Task.objects.filter(ranking_set=ranking_set).exists()


def test_failed_requests_cancel_the_set(project, caplog):
    _prompt(project)
    ranking_set = comparison_create(project=project)
    with generation_faults({"oom_above_rows": 0}):
        _run(ranking_set)
    assert ranking_set_requests(ranking_set).filter(state="failed").exists()
    with caplog.at_level(logging.WARNING):
        assert comparison_assemble(ranking_set=ranking_set) is False
    ranking_set.refresh_from_db()
    assert ranking_set.state == "cancelled"
    assert f"Ranking set {ranking_set.pk} cancelled" in caplog.text
    assert "Out of memory" in caplog.text
    assert "sampling its candidates failed" in ranking_set.cancel_reason
    assert "Out of memory" in ranking_set.cancel_reason
    assert not ranking_set.entries.exists() and not Task.objects.exists()
    # A cancelled set is final.
    assert comparison_assemble(ranking_set=ranking_set) is False


# ---------------------------------------------------------------------------- queue depth


def test_top_up_reaches_the_depth_and_stops(project):
    project.comparison_queue_depth = 3
    project.save()
    for i in range(5):
        _prompt(project, f"Prompt number {i}?")

    assert comparisons_top_up(project=project) == 3
    assert RankingSet.objects.filter(project=project, state="sampling").count() == 3
    assert comparisons_top_up(project=project) == 0

    # One set finishes its rankings: the queue has room for one more.
    done = RankingSet.objects.filter(project=project).first()
    RankingSet.objects.filter(pk=done.pk).update(state="complete")
    assert comparisons_top_up(project=project) == 1
    # Only one prompt is left unused, and the queue is full again.
    assert comparisons_top_up(project=project) == 0
    assert len(set(RankingSet.objects.values_list("context_id", flat=True))) == 4


def test_top_up_stops_quietly_without_contexts_or_models(project):
    project.comparison_queue_depth = 5
    project.save()
    _prompt(project, "Only one.")
    assert comparisons_top_up(project=project) == 1
    project.candidate_models.clear()
    _prompt(project, "Another.")
    assert comparisons_top_up(project=project) == 0


def test_beat_tasks_top_up_active_projects_and_assemble_finished_sets(project, models):
    asleep = ProjectFactory(slug="asleep", is_active=False, sampling=dict(FAST))
    asleep.candidate_models.set(models)
    _prompt(asleep, "Not now.")
    project.comparison_queue_depth = 1
    project.save()
    _prompt(project, "First?")
    _prompt(project, "Second?")

    assert tasks.top_up_comparisons() == 1
    assert not RankingSet.objects.filter(project=asleep).exists()
    first = RankingSet.objects.get(project=project)
    # (A worker batches every queued request of a model, so run the first set's before the
    # second set asks for its own.)
    _run(first)
    project.comparison_queue_depth = 2
    project.save()
    assert tasks.top_up_comparisons() == 1
    second = RankingSet.objects.exclude(pk=first.pk).get(project=project)
    # Only the set whose requests are done is assembled.
    assert tasks.assemble_ranking_sets() == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("collecting", "sampling")
    assert Task.objects.filter(ranking_set=first).count() == 3


def test_beat_schedule_runs_the_comparison_tasks():
    tasks_by_name = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"labelling.tasks.assemble_ranking_sets", "labelling.tasks.top_up_comparisons"} <= (
        tasks_by_name
    )


def test_changing_k_and_n_applies_to_new_sets_only(project, lead):
    from annotations.projects import project_update

    _prompt(project)
    _prompt(project, text="Name three rivers.")
    started = comparison_create(project=project, requested_by=lead)
    assert started.replies_wanted == 4
    # The lead changes K and N while the set is still sampling.
    project_update(project=project, actor=lead, replies_per_set=2, rankings_per_set=1)
    assert _settle(started)
    started.refresh_from_db()
    assert started.entries.count() == 4
    assert Task.objects.filter(ranking_set=started).count() == 3
    project.refresh_from_db()
    later = comparison_create(project=project, requested_by=lead)
    assert (later.replies_wanted, later.rankings_needed) == (2, 1)
    assert _settle(later)
    assert later.entries.count() == 2
    assert Task.objects.filter(ranking_set=later).count() == 1
