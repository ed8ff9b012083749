"""Generation requests from creation to stored replies, batching, OOM splitting and failures."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from annotations.models import Message
from annotations.services import conversation_start, message_add
from tests.factories import ModelVersionFactory, ProjectFactory
from trainer_bridge.backends import model_cache
from trainer_bridge.generation import generation_request_create, generation_request_retry
from trainer_bridge.models import GenerationRequest
from trainer_bridge.selectors import queue_position
from trainer_bridge.tasks import generation_send
from trainer_bridge.watchdog import generations_requeue_stuck
from trainer_bridge.worker import process_generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy_version(tiny_model_paths):
    return ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))


@pytest.fixture
def project():
    return ProjectFactory(slug="gen", max_generations_per_request=8)


def _context(project, text="How do I boil an egg?"):
    _, root = conversation_start(project=project, text=text)
    return root


def _request(project, policy_version, *, n=2, text="How do I boil an egg?", **params):
    return generation_request_create(
        project=project,
        context=_context(project, text),
        model_version=policy_version,
        purpose="candidates",
        n=n,
        params={"max_new_tokens": 12, "temperature": 0.9, "seed": 1, **params},
    )


def generation_settings(**overrides):
    from django.conf import settings

    parley = {**settings.PARLEY, "GENERATION": {**settings.PARLEY["GENERATION"], **overrides}}
    return override_settings(PARLEY=parley)


def test_request_is_queued_and_sent_after_commit(
    project, policy_version, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("trainer_bridge.tasks.generate.delay")
    with django_capture_on_commit_callbacks(execute=True):
        request = _request(project, policy_version)
    delay.assert_called_once_with(request.pk)
    assert request.state == "queued" and request.params["max_new_tokens"] == 12
    assert queue_position(request) == 1


def test_worker_stores_n_model_written_siblings(project, policy_version):
    request = _request(project, policy_version, n=3)
    report = process_generation(request.pk)
    request.refresh_from_db()
    assert report.done == 1 and request.state == "done"
    assert request.started_at <= request.finished_at
    assert request.prompt_tokens > 0 and request.completion_tokens > 0
    outputs = list(request.outputs.order_by("output_index"))
    assert [m.output_index for m in outputs] == [0, 1, 2]
    for message in [m.message for m in outputs]:
        assert message.role == "assistant" and message.parent_id == request.context_id
        assert message.author_model == policy_version and message.is_synthetic
        assert "<|" not in message.text  # special tokens stripped
    # A second delivery of the same message finds the request done and stores nothing.
    assert process_generation(request.pk).requests == 0
    assert Message.objects.filter(generation_output__request=request).count() == 3


def test_one_batch_takes_every_queued_request_for_the_model(project, policy_version):
    requests = [_request(project, policy_version, text=f"Question {i}?") for i in range(5)]
    report = process_generation(requests[0].pk)
    assert report.requests == 5 and report.rows == 10 and report.done == 5
    assert set(GenerationRequest.objects.values_list("state", flat=True)) == {"done"}


def test_requests_with_different_seeds_and_lengths_share_one_batch(project, policy_version, mocker):
    from trainer_bridge.backends import LoadedGenerator

    generator = model_cache().get(policy_version, device="cpu")
    session = mocker.spy(LoadedGenerator, "session")
    forward = mocker.spy(generator.model, "forward")
    requests = [
        _request(project, policy_version, text="Question 0?", seed=1, max_new_tokens=12),
        _request(project, policy_version, text="Question 1?", seed=2, max_new_tokens=5),
        _request(project, policy_version, text="Question 2?", seed=3, temperature=0.0),
    ]
    report = process_generation(requests[0].pk)
    assert report.requests == 3 and report.rows == 6 and report.done == 3
    # One session, whose prompts were all encoded by one forward.
    assert session.call_count == 1
    prefills = [c for c in forward.call_args_list if c.kwargs["input_ids"].shape[1] > 1]
    assert [c.kwargs["input_ids"].shape[0] for c in prefills] == [6]
    requests[1].refresh_from_db()
    assert requests[1].completion_tokens <= 2 * 5


def test_a_seeded_request_gives_the_same_replies_alone_or_batched(project, policy_version):
    def replies(request):
        return list(
            request.outputs.order_by("output_index").values_list("message__text", flat=True)
        )

    alone = _request(project, policy_version, n=3, text="How do I plant tulips?", seed=42)
    process_generation(alone.pk)
    batched = _request(project, policy_version, n=3, text="How do I plant tulips?", seed=42)
    others = [
        _request(project, policy_version, text="Anything else?", seed=9, max_new_tokens=20),
        _request(project, policy_version, n=4, text="A longer question about gardens?", seed=5),
        _request(project, policy_version, text="Greedy, please.", temperature=0.0),
    ]
    report = process_generation(others[0].pk)
    assert report.requests == 4
    assert replies(batched) == replies(alone)
    assert len(set(replies(alone))) > 1  # the n samples still differ from each other


def test_claiming_and_storing_take_no_query_per_request(project, policy_version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(count: int) -> int:
        requests = [_request(project, policy_version, text=f"Q{count}-{i}?") for i in range(count)]
        with CaptureQueriesContext(connection) as captured:
            report = process_generation(requests[0].pk)
        assert report.done == count
        return len(captured)

    process_generation(_request(project, policy_version, text="Load the model first.").pk)
    # Joining is off: its polls cost a claim each while a batch runs, however many requests
    # the batch holds, and how many polls a batch makes depends on how long it runs.
    with generation_settings(JOIN_POLL_SECONDS=-1):
        assert queries_for(2) == queries_for(8)


def test_token_budget_limits_the_batch(project, policy_version):
    requests = [_request(project, policy_version, text=f"Question {i}?") for i in range(4)]
    with generation_settings(TOKEN_BUDGET=60):
        report = process_generation(requests[0].pk)
    assert 1 <= report.requests < 4
    states = list(GenerationRequest.objects.order_by("id").values_list("state", flat=True))
    assert states[0] == "done" and "queued" in states


def test_out_of_memory_splits_the_batch(project, policy_version):
    requests = [_request(project, policy_version, text=f"Question {i}?") for i in range(4)]
    with generation_settings(FAULTS={"oom_above_rows": 2}):
        report = process_generation(requests[0].pk)
    assert report.rows == 8 and report.splits == 3 and report.done == 4
    assert Message.objects.filter(generation_output__request__in=requests).count() == 8


def test_a_request_that_never_fits_fails_with_the_reason(project, policy_version):
    request = _request(project, policy_version)
    with generation_settings(FAULTS={"oom_above_rows": 0}):
        report = process_generation(request.pk)
    request.refresh_from_db()
    assert report.failed == 1 and request.state == "failed"
    assert "Out of memory even for a single sample" in request.error
    assert not request.outputs.exists()

    retried = generation_request_retry(request=request)
    assert retried.state == "queued" and retried.attempts == 0 and retried.error == ""
    process_generation(request.pk)
    request.refresh_from_db()
    assert request.state == "done" and request.outputs.count() == 2


def test_model_is_loaded_once_per_process(project, policy_version):
    cache = model_cache()
    _ = process_generation(_request(project, policy_version).pk)
    loads = cache.loads
    process_generation(_request(project, policy_version, text="Again?").pk)
    assert cache.loads == loads


def test_stuck_requests_are_requeued_then_failed(project, policy_version):
    request = _request(project, policy_version)
    long_ago = timezone.now() - timedelta(hours=1)
    GenerationRequest.objects.filter(pk=request.pk).update(
        state="running", started_at=long_ago, attempts=1, worker="gone:1"
    )
    assert generations_requeue_stuck(send=generation_send) == (1, 0)
    request.refresh_from_db()
    assert request.state == "queued"
    GenerationRequest.objects.filter(pk=request.pk).update(
        state="running", started_at=long_ago, attempts=3
    )
    assert generations_requeue_stuck(send=generation_send) == (0, 1)
    request.refresh_from_db()
    assert request.state == "failed" and "after 3 attempts" in request.error
    assert "gone:1" in request.error


def test_results_of_a_superseded_attempt_are_dropped(project, policy_version):
    from trainer_bridge.batches import generation_results_store

    request = _request(project, policy_version)
    GenerationRequest.objects.filter(pk=request.pk).update(
        state="running", started_at=timezone.now(), attempts=2
    )
    assert not generation_results_store(
        request_id=request.pk, attempt=1, texts=["late"], prompt_tokens=1, completion_tokens=1
    )
    assert not request.outputs.exists()


def test_a_batch_store_skips_only_the_superseded_requests(project, policy_version):
    from trainer_bridge.batches import GenerationResult, generation_results_store_batch

    current, superseded = (_request(project, policy_version, text=t) for t in ("A?", "B?"))
    GenerationRequest.objects.filter(pk__in=[current.pk, superseded.pk]).update(
        state="running", started_at=timezone.now(), attempts=2
    )
    results = [
        GenerationResult(
            request_id=r.pk, attempt=attempt, texts=["x", "y"], prompt_tokens=3, completion_tokens=4
        )
        for r, attempt in ((current, 2), (superseded, 1))
    ]
    assert generation_results_store_batch(results=results) == {current.pk}
    assert sorted(current.outputs.values_list("output_index", flat=True)) == [0, 1]
    assert not superseded.outputs.exists()
    # Storing again (a redelivered result) finds the request done and adds nothing.
    assert generation_results_store_batch(results=results) == set()
    assert Message.objects.filter(generation_output__request=current).count() == 2
    current.refresh_from_db()
    assert current.state == "done" and current.completion_tokens == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"params": {"temperature": -0.5}}, "params.temperature"),
        ({"params": {"top_p": 0}}, "params.top_p"),
        ({"params": {"max_new_tokens": 10**6}}, "params.max_new_tokens"),
        ({"params": {"beams": 3}}, "params.beams"),
        ({"params": {"temperature": "hot"}}, "params.temperature"),
        ({"n": 9}, "n"),
        ({"n": 0}, "n"),
        ({"purpose": "essay"}, "purpose"),
    ],
)
def test_bad_parameters_name_the_field(project, policy_version, kwargs, field):
    arguments = {
        "project": project,
        "context": _context(project),
        "model_version": policy_version,
        "purpose": "draft",
        "n": 1,
        **kwargs,
    }
    with pytest.raises(ValidationError) as excinfo:
        generation_request_create(**arguments)
    assert field in excinfo.value.message_dict
    assert not GenerationRequest.objects.exists()


def test_context_must_end_with_a_user_turn_of_the_project(project, policy_version):
    root = _context(project)
    reply = message_add(parent=root, role="assistant", text="Boil it.")
    with pytest.raises(ValidationError, match="after a user turn"):
        generation_request_create(
            project=project, context=reply, model_version=policy_version, purpose="draft"
        )
    with pytest.raises(ValidationError, match="another project"):
        generation_request_create(
            project=ProjectFactory(), context=root, model_version=policy_version, purpose="draft"
        )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"top_k": 2**63}, "params.top_k"),
        ({"top_k": 1_000_001}, "params.top_k"),
        ({"top_k": True}, "params.top_k"),
        ({"top_k": float("inf")}, "params.top_k"),
        ({"top_k": float("nan")}, "params.top_k"),
        ({"temperature": 10**400}, "params.temperature"),
        ({"temperature": float("inf")}, "params.temperature"),
        ({"repetition_penalty": 0}, "params.repetition_penalty"),
        ({"seed": 2**32}, "params.seed"),
        ({"seed": False}, "params.seed"),
        ({"max_new_tokens": 2**63}, "params.max_new_tokens"),
    ],
)
def test_sampling_values_are_bounded_finite_numbers(project, policy_version, params, field):
    with pytest.raises(ValidationError) as excinfo:
        generation_request_create(
            project=project,
            context=_context(project),
            model_version=policy_version,
            purpose="draft",
            params=params,
        )
    assert list(excinfo.value.message_dict) == [field]
    assert not GenerationRequest.objects.exists()


def test_a_request_that_makes_sampling_raise_fails_alone(project, policy_version):
    # The bad request is another project's, batched with ours because the model is the same.
    bad = _request(ProjectFactory(max_generations_per_request=8), policy_version, top_k=50)
    good = [_request(project, policy_version, text=f"Question {i}?") for i in range(4)]
    with generation_settings(FAULTS={"fail_when_top_k_above": 40}):
        report = process_generation(good[0].pk)

    assert report.requests == 5 and report.done == 4 and report.failed == 1
    assert report.splits >= 1
    bad.refresh_from_db()
    assert bad.state == "failed" and not bad.outputs.exists()
    assert bad.error == "OverflowError: injected: a row's top_k is above 40"
    for request in good:
        request.refresh_from_db()
        assert request.state == "done" and request.error == ""
        assert request.outputs.count() == 2


@pytest.mark.parametrize(
    "stored",
    [
        {"top_k": 2**63},  # the request that took its batch down, stored before the bounds
        {"max_new_tokens": "many"},
        {"temperature": True},
        {"beams": 3},
    ],
)
def test_a_stored_request_with_bad_params_fails_alone(project, policy_version, stored):
    # Older than the others, so it is in the batch whichever message a worker takes.
    bad = _request(project, policy_version, text="Bad?")
    good = [_request(project, policy_version, text=f"Question {i}?") for i in range(3)]
    GenerationRequest.objects.filter(pk=bad.pk).update(params={**bad.params, **stored})

    report = process_generation(good[1].pk)

    assert report.requests == 4 and report.done == 3 and report.failed == 1
    bad.refresh_from_db()
    assert bad.state == "failed" and not bad.outputs.exists()
    assert f"params.{next(iter(stored))}" in bad.error
    assert all(
        r.state == "done" for r in GenerationRequest.objects.filter(pk__in=[r.pk for r in good])
    )
    assert Message.objects.filter(generation_output__request__in=[r.pk for r in good]).count() == 6


def test_a_context_the_tokenizer_refuses_fails_alone(project, policy_version, mocker):
    from trainer_bridge.backends import LoadedGenerator

    encode = LoadedGenerator.encode_chats

    def picky(self, conversations):
        if any(m["content"] == "Bad?" for c in conversations for m in c):
            raise ValueError("Unknown role in the chat template")
        return encode(self, conversations)

    mocker.patch.object(LoadedGenerator, "encode_chats", picky)
    bad = _request(project, policy_version, text="Bad?")
    good = [_request(project, policy_version, text=f"Question {i}?") for i in range(2)]

    report = process_generation(good[0].pk)

    assert report.requests == 3 and report.done == 2 and report.failed == 1
    bad.refresh_from_db()
    assert bad.state == "failed" and bad.error == "ValueError: Unknown role in the chat template"
    assert all(
        r.state == "done" for r in GenerationRequest.objects.filter(pk__in=[g.pk for g in good])
    )


def _replies(request) -> list[str]:
    return list(request.outputs.order_by("output_index").values_list("message__text", flat=True))


def test_a_request_queued_while_a_batch_runs_joins_it(project, policy_version, mocker):
    from trainer_bridge.continuous import DecodeSession

    tulips = {"text": "How do I plant tulips?", "seed": 42, "max_new_tokens": 20}
    alone = _request(project, policy_version, **tulips)
    process_generation(alone.pk)

    first = _request(project, policy_version, text="A long question about the garden?", seed=3)
    late: list[GenerationRequest] = []
    steps: list[tuple[int, int]] = []  # (rows that joined, rows running) after each step
    step = DecodeSession.step

    def step_then_queue(session):
        outcome = step(session)
        steps.append((outcome.joined, session.active))
        if not late:  # queued after the batch's first step, as a trainer's request would be
            late.append(_request(project, policy_version, **tulips))
        return outcome

    mocker.patch.object(DecodeSession, "step", step_then_queue)
    with generation_settings(JOIN_POLL_SECONDS=0):
        report = process_generation(first.pk)

    assert report.requests == 2 and report.joined == 1 and report.done == 2
    # It joined the running batch: its 2 rows came in while the first request's still ran.
    assert steps[0][0] == 2
    assert any(joined == 2 and running > 2 for joined, running in steps[1:])
    late[0].refresh_from_db()
    assert late[0].state == "done" and late[0].attempts == 1
    # The same seed gives the same replies, joining late or alone.
    assert _replies(late[0]) == _replies(alone) and len(set(_replies(alone))) > 1


def _draft(project, policy_version, text="Draft, please?", **params):
    return generation_request_create(
        project=project,
        context=_context(project, text),
        model_version=policy_version,
        purpose="draft",
        n=1,
        params={"max_new_tokens": 12, "temperature": 0.9, "seed": 1, **params},
    )


def test_drafts_are_claimed_before_candidates(project, policy_version):
    candidates = [_request(project, policy_version, text=f"Question {i}?") for i in range(3)]
    draft = _draft(project, policy_version)  # queued last
    with generation_settings(MAX_BATCH_REQUESTS=2, JOIN_POLL_SECONDS=-1):
        report = process_generation(candidates[0].pk)

    # The message's own request, then the draft before the older candidates.
    assert report.requests == 2 and report.done == 2
    draft.refresh_from_db()
    assert draft.state == "done" and draft.outputs.count() == 1
    states = [GenerationRequest.objects.get(pk=c.pk).state for c in candidates]
    assert states == ["done", "queued", "queued"]


def test_a_draft_is_stored_as_soon_as_it_is_done(project, policy_version, mocker):
    from trainer_bridge import worker

    store = mocker.spy(worker, "generation_results_store_batch")
    mocker.patch.object(worker, "STORE_WAIT_SECONDS", 600)  # a slow machine stores no sooner
    candidates = [
        _request(project, policy_version, text=f"Tell me a long story {i}?", max_new_tokens=40)
        for i in range(2)
    ]
    draft = _draft(project, policy_version, max_new_tokens=2)
    report = process_generation(candidates[0].pk)

    assert report.done == 3
    stored = [{r.request_id for r in c.kwargs["results"]} for c in store.call_args_list]
    # The draft is stored on its own, while the candidates still decode; they follow together.
    assert stored[0] == {draft.pk}
    assert stored[1:] == [{c.pk for c in candidates}]
