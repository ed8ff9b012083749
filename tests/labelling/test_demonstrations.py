"""Demonstration tasks through their services: pool, blank starts, drafts, validation, skips."""

import random
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from annotations.models import Conversation, Message, PromptReport
from annotations.reports import prompt_report_create
from annotations.services import conversation_start, message_add
from labelling import demonstrations as demo
from labelling.autosave import task_autosave
from labelling.claims import task_claim_next, task_skip, task_submit
from labelling.demonstrations import edit_distance
from labelling.leases import TaskConflict
from labelling.models import Task
from labelling.services import task_leases_expire
from tests.factories import MembershipFactory, ModelVersionFactory, UserFactory
from trainer_bridge.models import GenerationOutput, GenerationRequest

KIND = "demonstration"


def _dp_distance(a: str, b: str) -> int:
    """The textbook table, as an oracle for the bit-parallel version."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("same text", "same text", 0),
        ("", "abc", 3),  # three insertions
        ("abc", "", 3),  # three deletions
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("flaw", "lawn", 2),  # -f, +n
        ("Saturday", "Sunday", 3),  # -a, -t, r->n
        ("ab", "ba", 2),  # no transpositions in Levenshtein: two substitutions
        ("café", "cafe", 1),  # one character, not one byte
        ("Paris is the capital.", "Paris is the capital of France.", 10),  # +" of France"
    ],
)
def test_edit_distance_hand_worked(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_edit_distance_agrees_with_the_table_and_is_fast_on_long_texts():
    rng = random.Random(7)
    for _ in range(500):
        alphabet = rng.choice(["ab", "abc ", "abcdefgh"])
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert edit_distance(a, b) == _dp_distance(a, b), (a, b)
    long_a = "".join(rng.choice("abcdefgh ") for _ in range(8000))
    long_b = "".join(rng.choice("abcdefgh ") for _ in range(8000))
    started = time.monotonic()
    assert edit_distance(long_a, long_b) > 0
    assert time.monotonic() - started < 5  # the table would take minutes in Python
    assert edit_distance("x" * 5000 + "a" + "y" * 5000, "x" * 5000 + "b" + "y" * 5000) == 1


# ---------------------------------------------------------------- helpers


def _prompt(project, text):
    _, root = conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
    return root


def _claim(project, user) -> Task:
    return task_claim_next(project=project, user=user, kind=KIND)


def _trainer(project, name):
    return MembershipFactory(project=project, user=UserFactory(username=name), role="trainer").user


@pytest.fixture
def draft_model(project):
    model = ModelVersionFactory(name="tiny-draft")
    project.draft_model = model
    project.save(update_fields=["draft_model"])
    return model


def _finish(request: GenerationRequest, *texts: str) -> list[Message]:
    """What a worker would store: model-written replies under the request's context."""
    outputs = [
        Message.objects.create(
            conversation_id=request.context.conversation_id,
            parent=request.context,
            role="assistant",
            text=text,
            depth=request.context.depth + 1,
            author_model=request.model_version,
            is_synthetic=True,
        )
        for text in texts
    ]
    for index, message in enumerate(outputs):
        GenerationOutput.objects.create(request=request, message=message, output_index=index)
    request.state = GenerationRequest.State.DONE
    request.save(update_fields=["state"])
    return outputs


def _autosave(task, user, turns, editor=""):
    return task_autosave(task_id=task.pk, user=user, data={"turns": turns, "editor": editor})


def _turn(role, text, draft_id=None):
    return {"role": role, "content": text, "draft_id": draft_id}


def _scratch_left(task) -> int:
    key = f"meta__{demo.SCRATCH_KEY}"
    return (
        Message.objects.filter(**{key: task.pk}).count()
        + Conversation.objects.filter(**{key: task.pk}).count()
    )


def _task_with_scratch(project, trainer, *, keep_autosave: bool) -> Task:
    """A claimed seed-prompt task with two turns autosaved and stored as scratch by a draft."""
    project.keep_autosave_on_expiry = keep_autosave
    project.save(update_fields=["keep_autosave_on_expiry"])
    _prompt(project, "Plan a day in Lisbon.")
    task = _claim(project, trainer)
    _autosave(task, trainer, [_turn("assistant", "Start in Belem."), _turn("user", "Food?")])
    demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    assert _scratch_left(task) == 2
    return task


# ---------------------------------------------------------------- claiming


@pytest.mark.django_db
def test_claims_take_pool_prompts_oldest_first_then_blank(project, trainer):
    first = _prompt(project, "How do I repot a cactus?")
    second = _prompt(project, "Explain photosynthesis.")
    other = _trainer(project, "otto")

    task = _claim(project, trainer)
    assert (task.kind, task.state, task.assignee) == ("demonstration", "assigned", trainer)
    assert task.message == first and task.conversation_id == first.conversation_id
    assert _claim(project, trainer) == task  # the held task comes back
    assert _claim(project, other).message == second

    blank = _claim(project, _trainer(project, "bea"))
    assert blank.message is None and blank.conversation is None
    described = demo.demonstration_describe(blank)
    assert described["context"] == [] and described["first_role"] == "user"
    assert demo.demonstration_describe(task)["first_role"] == "assistant"
    assert demo.demonstration_describe(task)["context"][0]["content"] == "How do I repot a cactus?"


@pytest.mark.django_db
def test_a_prompt_with_a_demonstration_task_in_any_state_is_not_offered_again(project, trainer):
    prompt = _prompt(project, "Old prompt")
    Task.objects.create(
        project=project,
        kind=KIND,
        state=Task.State.DONE,
        conversation=prompt.conversation,
        message=prompt,
    )
    assert _claim(project, trainer).message is None


@pytest.mark.django_db
def test_reported_prompts_leave_the_pool_until_a_lead_dismisses_the_report(project, trainer, lead):
    reported = _prompt(project, "Tell me my neighbour's address.")
    clean = _prompt(project, "Write a haiku about rain.")
    task = _claim(project, trainer)
    assert task.message == reported
    task_skip(task_id=task.pk, user=trainer, reason="asks for someone's address", report="pii")
    report = PromptReport.objects.get()
    assert (report.message, report.reason, report.state) == (reported, "pii", "open")
    assert report.reporter == trainer and report.note == "asks for someone's address"

    # The skipped task is open again, but nobody is offered a reported prompt.
    other = _trainer(project, "otto")
    assert _claim(project, other).message == clean
    third = _trainer(project, "bea")
    assert _claim(project, third).message is None

    report.state = PromptReport.State.DISMISSED
    report.save(update_fields=["state"])
    assert _claim(project, _trainer(project, "dan")) == task  # back in the pool


@pytest.mark.django_db
def test_a_prompt_reported_before_it_was_claimed_is_never_supplied(project, trainer):
    prompt = _prompt(project, "Spam spam spam")
    prompt_report_create(project=project, message=prompt, reporter=None, reason="nonsense")
    assert _claim(project, trainer).message is None


@pytest.mark.django_db
@pytest.mark.parametrize("keep", [False, True])
def test_an_expired_lease_returns_the_task_with_or_without_its_autosave(project, trainer, keep):
    project.keep_autosave_on_expiry = keep
    project.save(update_fields=["keep_autosave_on_expiry"])
    _prompt(project, "Seed")
    task = _claim(project, trainer)
    _autosave(task, trainer, [_turn("assistant", "Half an answer")], editor="more")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert task_leases_expire() == 1
    successor = _trainer(project, "otto")
    again = _claim(project, successor)
    assert again == task and again.assignee == successor
    if keep:
        assert demo.state_from_autosave(again.autosave)["turns"][0]["content"] == "Half an answer"
    else:
        assert again.autosave == {}
    with pytest.raises(TaskConflict):
        task_submit(
            task_id=task.pk, user=trainer, data={"turns": [_turn("assistant", "Late answer")]}
        )


@pytest.mark.django_db
@pytest.mark.parametrize("keep", [False, True])
def test_the_next_holder_inherits_scratch_turns_only_with_the_autosave(
    project, trainer, draft_model, keep
):
    task = _task_with_scratch(project, trainer, keep_autosave=keep)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    task_leases_expire()

    # The service the API calls, not only the page, clears what nobody can continue.
    again = _claim(project, _trainer(project, "otto"))
    assert again == task
    assert _scratch_left(task) == (2 if keep else 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks with SKIP LOCKED need PostgreSQL (set DATABASE_URL to a PostgreSQL one)",
)
def test_concurrent_claims_never_get_the_same_prompt(project, monkeypatch):
    for i in range(3):
        _prompt(project, f"Prompt {i}")
    trainers = [_trainer(project, f"t{i}") for i in range(4)]

    # Hold each claim's transaction open after it created its task, so the others run into the
    # locked prompt row instead of finishing one after another.
    create = Task.objects.create

    def slow_create(**fields):
        task = create(**fields)
        time.sleep(0.5)
        return task

    monkeypatch.setattr(Task.objects, "create", slow_create)
    barrier = threading.Barrier(len(trainers))
    claimed: dict[str, int | None] = {}
    errors: list[BaseException] = []

    def claim(user):
        try:
            barrier.wait(timeout=30)
            claimed[user.username] = _claim(project, user).message_id
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(user,)) for user in trainers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a claim never finished"
    assert not errors
    prompts = [message for message in claimed.values() if message is not None]
    assert len(prompts) == len(set(prompts)) == 3
    assert list(claimed.values()).count(None) == 1  # the fourth trainer starts blank
    assert Task.objects.filter(kind=KIND).count() == 4


# ---------------------------------------------------------------- submitting


@pytest.mark.django_db
def test_a_seed_prompt_task_stores_the_dialogue_under_the_prompt(project, trainer):
    prompt = _prompt(project, "What is a good first houseplant?")
    task = _claim(project, trainer)
    turns = [
        _turn("assistant", "A pothos: it forgives missed waterings."),
        _turn("user", "And for a dark room?"),
        _turn("assistant", "A ZZ plant or a snake plant."),
    ]
    done = task_submit(task_id=task.pk, user=trainer, data={"turns": turns})

    assert done.state == "done"
    stored = [Message.objects.get(pk=pk) for pk in done.result["messages"]]
    assert done.result["conversation"] == prompt.conversation_id
    assert [m.role for m in stored] == ["assistant", "user", "assistant"]
    assert [m.text for m in stored] == [t["content"] for t in turns]
    assert stored[0].parent == prompt
    assert [m.parent_id for m in stored[1:]] == [m.pk for m in stored[:-1]]
    assert all(m.author_user == trainer and m.author_model is None for m in stored)
    assert all(m.draft is None and m.draft_edit_distance is None for m in stored)


@pytest.mark.django_db
def test_a_blank_task_stores_a_new_demonstration_conversation(project, trainer):
    task = _claim(project, trainer)
    turns = [_turn("user", "Hi! Can you help me plan a picnic?"), _turn("assistant", "Gladly.")]
    done = task_submit(task_id=task.pk, user=trainer, data={"turns": turns})
    conversation = Conversation.objects.get(pk=done.result["conversation"])
    assert conversation.source == "demonstration" and conversation.created_by == trainer
    root, reply = (Message.objects.get(pk=pk) for pk in done.result["messages"])
    assert root.parent is None and root.author_user == trainer and root.role == "user"
    assert reply.parent == root and reply.author_user == trainer


@pytest.mark.django_db
def test_submitting_twice_stores_one_conversation(project, trainer):
    task = _claim(project, trainer)
    data = {"turns": [_turn("user", "Hello"), _turn("assistant", "Hi there")]}
    first = task_submit(task_id=task.pk, user=trainer, data=data)
    messages = Message.objects.count()
    second = task_submit(task_id=task.pk, user=trainer, data=data)
    assert second.result == first.result
    assert Message.objects.count() == messages
    assert Conversation.objects.filter(source="demonstration").count() == 1


LONG = "x" * 51


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("seeded", "turns", "field"),
    [
        (False, [], "turns"),
        (False, [_turn("user", "   "), _turn("assistant", "Hi")], "turns[0].content"),
        (False, [_turn("user", "Hello"), _turn("assistant", "")], "turns[1].content"),
        (False, [_turn("assistant", "I speak first?")], "turns[0].role"),
        (False, [_turn("user", "Hi"), _turn("user", "Hello?")], "turns[1].role"),
        (False, [_turn("user", "Hi"), _turn("assistant", "Hi"), _turn("user", "Bye")], "turns"),
        (False, [_turn("user", "Hi"), _turn("assistant", LONG)], "turns[1].content"),
        (True, [_turn("user", "A second prompt")], "turns[0].role"),
        (
            True,
            [_turn("assistant", "x"), _turn("user", "y")] * 2 + [_turn("assistant", "z")],
            "turns",
        ),
        (True, [_turn("assistant", "Reply", draft_id=999_999)], "turns[0].draft_id"),
        (False, [_turn("user", "Hi", draft_id=1), _turn("assistant", "Yo")], "turns[0].draft_id"),
        (False, "not a list", "turns"),
        (False, [{"role": "robot", "content": "beep"}], "turns[0].role"),
    ],
)
def test_invalid_submissions_are_refused_and_store_nothing(project, trainer, seeded, turns, field):
    project.max_message_chars = 50
    project.max_turns = 5  # with a seed prompt: at most 4 new turns
    project.save(update_fields=["max_message_chars", "max_turns"])
    if seeded:
        _prompt(project, "Seed prompt")
    task = _claim(project, trainer)
    before = (Message.objects.count(), Conversation.objects.count())

    with pytest.raises(ValidationError) as caught:
        task_submit(task_id=task.pk, user=trainer, data={"turns": turns})

    assert field in caught.value.message_dict
    assert (Message.objects.count(), Conversation.objects.count()) == before
    task.refresh_from_db()
    assert task.state == "assigned" and task.result == {}


@pytest.mark.django_db
def test_submitting_a_task_one_does_not_hold_is_a_conflict(project, trainer):
    task = _claim(project, trainer)
    other = _trainer(project, "otto")
    with pytest.raises(TaskConflict) as caught:
        task_submit(
            task_id=task.pk,
            user=other,
            data={"turns": [_turn("user", "Hi"), _turn("assistant", "Hello")]},
        )
    assert caught.value.code == "task_not_held"
    assert not Message.objects.exists()


# ---------------------------------------------------------------- drafts


@pytest.mark.django_db
def test_a_draft_for_the_seed_prompt_is_kept_as_provenance(project, trainer, draft_model):
    prompt = _prompt(project, "Name three primary colours.")
    task = _claim(project, trainer)
    request = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    assert (request.context, request.model_version, request.purpose) == (
        prompt,
        draft_model,
        "draft",
    )
    assert request.requested_by == trainer
    (draft,) = _finish(request, "Red, blue and yelow.")

    final = "Red, blue and yellow (for paint)."
    done = task_submit(
        task_id=task.pk, user=trainer, data={"turns": [_turn("assistant", final, draft.pk)]}
    )
    reply = Message.objects.get(pk=done.result["messages"][0])
    assert reply.draft == draft and reply.parent == draft.parent == prompt  # siblings
    assert reply.author_user == trainer and reply.author_model is None and not reply.is_synthetic
    assert reply.draft_edit_distance == edit_distance(draft.text, final) == 13
    assert draft.author_model == draft_model


@pytest.mark.django_db
def test_drafts_for_later_turns_reuse_the_scratch_dialogue(project, trainer, draft_model):
    prompt = _prompt(project, "Plan a day in Lisbon.")
    task = _claim(project, trainer)
    first = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    (draft1,) = _finish(first, "Visit Belem.")
    turns = [_turn("assistant", "Start in Belem, then Alfama.", draft1.pk), _turn("user", "Food?")]
    _autosave(task, trainer, turns)

    second = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    context = second.context
    assert (context.role, context.text, context.meta) == (
        "user",
        "Food?",
        {"scratch_for_task": task.pk},
    )
    scratch_reply = context.parent
    assert scratch_reply.parent == prompt and scratch_reply.draft == draft1
    assert demo.demonstration_draft_request(task_id=task.pk, user=trainer) == second  # in flight
    assert demo.current_draft(task, [demo.Turn(**t) for t in turns]) == second
    (draft2,) = _finish(second, "Try pasteis de nata.")
    assert demo.demonstration_draft_request(task_id=task.pk, user=trainer, reuse=True) == second

    turns.append(_turn("assistant", "Pasteis de nata in Belem.", draft2.pk))
    done = task_submit(task_id=task.pk, user=trainer, data={"turns": turns})
    reply1, question, reply2 = (Message.objects.get(pk=pk) for pk in done.result["messages"])
    assert (reply1.pk, question.pk) == (scratch_reply.pk, context.pk)  # the scratch became real
    assert reply1.meta == {} and question.meta == {}
    assert reply1.draft == draft1 and reply1.draft_edit_distance == edit_distance(
        "Visit Belem.", "Start in Belem, then Alfama."
    )
    assert reply2.draft == draft2 and reply2.parent == draft2.parent == question
    assert all(m.author_user == trainer for m in (reply1, question, reply2))
    assert _scratch_left(task) == 0


@pytest.mark.django_db
def test_a_draft_for_an_edited_dialogue_is_refused(project, trainer, draft_model):
    _prompt(project, "Seed")
    task = _claim(project, trainer)
    turns = [_turn("assistant", "One"), _turn("user", "Two")]
    _autosave(task, trainer, turns)
    (draft,) = _finish(demo.demonstration_draft_request(task_id=task.pk, user=trainer), "Three")
    before = Message.objects.count()

    edited = [
        _turn("assistant", "One"),
        _turn("user", "Two, changed"),
        _turn("assistant", "3", draft.pk),
    ]
    with pytest.raises(ValidationError) as caught:
        task_submit(task_id=task.pk, user=trainer, data={"turns": edited})
    assert "turns[2].draft_id" in caught.value.message_dict
    assert Message.objects.count() == before


@pytest.mark.django_db
def test_candidates_are_not_drafts(project, trainer, draft_model):
    from trainer_bridge.generation import generation_request_create

    prompt = _prompt(project, "Seed")
    task = _claim(project, trainer)
    request = generation_request_create(
        project=project, context=prompt, model_version=draft_model, purpose="candidates"
    )
    (candidate,) = _finish(request, "A candidate")
    with pytest.raises(ValidationError) as caught:
        task_submit(
            task_id=task.pk,
            user=trainer,
            data={"turns": [_turn("assistant", "Mine", candidate.pk)]},
        )
    assert "turns[0].draft_id" in caught.value.message_dict


@pytest.mark.django_db
def test_a_blank_task_with_drafts_keeps_its_scratch_conversation(project, trainer, draft_model):
    task = _claim(project, trainer)
    _autosave(task, trainer, [_turn("user", "Draft me a limerick.")])
    request = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    scratch = request.context.conversation
    assert scratch.meta == {"scratch_for_task": task.pk} and request.context.parent is None
    (draft,) = _finish(request, "There once was a cat.")
    # The trainer rewrites the opening, asks again, and keeps the second version.
    _autosave(task, trainer, [_turn("user", "Write me a limerick.")])
    second = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    (draft2,) = _finish(second, "A dog from Peru...")
    assert second.context.conversation != scratch

    turns = [
        _turn("user", "Write me a limerick."),
        _turn("assistant", "A dog from Peru.", draft2.pk),
    ]
    done = task_submit(task_id=task.pk, user=trainer, data={"turns": turns})
    conversation = Conversation.objects.get(pk=done.result["conversation"])
    assert conversation == second.context.conversation
    assert conversation.meta == {} and conversation.created_by == trainer
    assert not Conversation.objects.filter(pk=scratch.pk).exists()  # the unused one is gone
    assert not Message.objects.filter(pk=draft.pk).exists()
    assert _scratch_left(task) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("keep", [False, True])
def test_skipping_drops_scratch_unless_autosaves_are_handed_on(project, trainer, draft_model, keep):
    task = _task_with_scratch(project, trainer, keep_autosave=keep)

    task_skip(task_id=task.pk, user=trainer)
    assert _scratch_left(task) == (2 if keep else 0)


@pytest.mark.django_db
def test_draft_requests_are_refused_when_they_make_no_sense(project, trainer, draft_model):
    task = _claim(project, trainer)  # blank: the user speaks first
    with pytest.raises(ValidationError) as caught:
        demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    assert "turns" in caught.value.message_dict
    _autosave(task, trainer, [_turn("user", "")])
    with pytest.raises(ValidationError) as caught:
        demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    assert "turns[0].content" in caught.value.message_dict
    with pytest.raises(TaskConflict):
        demo.demonstration_draft_request(task_id=task.pk, user=_trainer(project, "otto"))
    project.draft_model = None
    project.save(update_fields=["draft_model"])
    _autosave(task, trainer, [_turn("user", "Hello")])
    with pytest.raises(ValidationError) as caught:
        demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    assert "draft_model" in caught.value.message_dict
    assert not GenerationRequest.objects.exists()


# ---------------------------------------------------------------- autosave from the page


@pytest.mark.django_db
def test_state_from_autosave_tolerates_anything_an_api_client_stored(project, trainer):
    shaped = demo.state_from_autosave(
        {"turns": [{"role": "user", "content": "ok"}, {"role": "bad"}, "junk"], "editor": 5}
    )
    assert shaped == {
        "turns": [{"role": "user", "content": "ok", "draft_id": None}],
        "editor": "",
        "editor_draft_id": None,
    }
    assert demo.state_from_autosave(None)["turns"] == []


@pytest.mark.django_db
def test_an_autosave_of_the_old_text_shape_is_read_as_content(project, trainer):
    """Work saved before turns said `content` still comes back, in the new shape."""
    old = {
        "turns": [
            {"role": "user", "text": "Saved last week", "draft_id": None},
            {"role": "assistant", "text": "An answer", "draft_id": 7},
        ],
        "editor": "half",
    }
    shaped = demo.state_from_autosave(old)
    assert shaped["turns"] == [
        {"role": "user", "content": "Saved last week", "draft_id": None},
        {"role": "assistant", "content": "An answer", "draft_id": 7},
    ]
    assert all("text" not in turn for turn in shaped["turns"])
    # A page that was opened before the change and saves in the old shape is stored in the new.
    assert demo.parse_state(old)["turns"][0] == {
        "role": "user",
        "content": "Saved last week",
        "draft_id": None,
    }


@pytest.mark.django_db
def test_continuing_a_conversation_after_an_assistant_turn(project, trainer):
    _, root = conversation_start(project=project, text="Hi", created_by=trainer)
    last = message_add(parent=root, role="assistant", text="Hello! How can I help?")
    task = Task.objects.create(
        project=project, kind=KIND, conversation=root.conversation, message=last
    )
    assert _claim(project, trainer) == task
    assert demo.first_role(task) == "user"
    done = task_submit(
        task_id=task.pk,
        user=trainer,
        data={"turns": [_turn("user", "Tell me a joke."), _turn("assistant", "Knock knock.")]},
    )
    question = Message.objects.get(pk=done.result["messages"][0])
    assert question.parent == last and question.depth == 2


@pytest.mark.django_db
def test_an_ignored_draft_stays_beside_the_reply_written_instead(project, trainer, draft_model):
    _prompt(project, "Seed")
    task = _claim(project, trainer)
    turns = [_turn("assistant", "One"), _turn("user", "Two")]
    _autosave(task, trainer, turns)
    request = demo.demonstration_draft_request(task_id=task.pk, user=trainer)
    (draft,) = _finish(request, "The model's three")

    turns.append(_turn("assistant", "My own three"))
    done = task_submit(task_id=task.pk, user=trainer, data={"turns": turns})
    one, two, three = (Message.objects.get(pk=pk) for pk in done.result["messages"])
    assert two == request.context and two.meta == {} and one.meta == {}
    assert three.parent == draft.parent == two and three.draft is None
    assert Message.objects.filter(pk=draft.pk).exists()
    assert _scratch_left(task) == 0
