"""Conversation writes go through services that check role order, length and authorship."""

import pytest
from django.core.exceptions import ValidationError

from annotations.models import Conversation, Message
from annotations.selectors import thread_to
from annotations.services import (
    GeneratedReplies,
    conversation_start,
    generated_replies_add,
    marked_messages_delete,
    marked_messages_keep,
    message_add,
)
from tests.factories import ModelVersionFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_dialogue_alternates_user_and_assistant():
    project = ProjectFactory()
    author = UserFactory()
    conversation, root = conversation_start(project=project, text="Hello?", created_by=author)
    reply = message_add(parent=root, role="assistant", text="Hi!", author_user=author)
    follow_up = message_add(parent=reply, role="user", text="Thanks", author_user=author)

    assert [m.role for m in thread_to(follow_up)] == ["user", "assistant", "user"]
    assert [m.depth for m in thread_to(follow_up)] == [0, 1, 2]
    assert follow_up.conversation_id == conversation.pk

    with pytest.raises(ValidationError, match="'A user turn cannot come after a user turn"):
        message_add(parent=root, role="user", text="again", author_user=author)
    with pytest.raises(
        ValidationError,
        match="An assistant turn cannot come after an assistant turn; expected user",
    ):
        message_add(parent=reply, role="assistant", text="again", author_user=author)


def test_system_prompt_then_user():
    project = ProjectFactory()
    _, system = conversation_start(project=project, text="You are terse.", role="system")
    with pytest.raises(ValidationError):
        message_add(parent=system, role="assistant", text="ok")
    assert message_add(parent=system, role="user", text="Hi").depth == 1


def test_first_turn_cannot_be_the_assistant():
    with pytest.raises(ValidationError, match="as the first turn"):
        conversation_start(project=ProjectFactory(), text="Hi", role="assistant")


def test_empty_and_overlong_text_refused_and_nothing_stored():
    project = ProjectFactory(max_message_chars=10)
    with pytest.raises(ValidationError, match="empty"):
        conversation_start(project=project, text="   ")
    with pytest.raises(ValidationError, match="limit is 10"):
        conversation_start(project=project, text="x" * 11)
    assert not Message.objects.exists()


def test_turn_limit():
    project = ProjectFactory(max_turns=2)
    _, root = conversation_start(project=project, text="Hi")
    reply = message_add(parent=root, role="assistant", text="Hello")
    with pytest.raises(ValidationError, match="limit of 2 turns"):
        message_add(parent=reply, role="user", text="More")


def test_model_authored_messages_are_synthetic_and_single_authored():
    project = ProjectFactory()
    _, root = conversation_start(project=project, text="Hi")
    model = ModelVersionFactory()
    reply = message_add(parent=root, role="assistant", text="Hello", author_model=model)
    assert reply.is_synthetic and reply.author_user is None
    with pytest.raises(ValidationError, match="one author"):
        message_add(
            parent=root, role="assistant", text="x", author_model=model, author_user=UserFactory()
        )


def test_draft_must_belong_to_the_same_point():
    project = ProjectFactory()
    _, root = conversation_start(project=project, text="Hi")
    _, other_root = conversation_start(project=project, text="Other")
    model = ModelVersionFactory()
    stray_draft = message_add(parent=other_root, role="assistant", text="draft", author_model=model)
    with pytest.raises(ValidationError, match="another point"):
        message_add(
            parent=root, role="assistant", text="mine", author_user=UserFactory(), draft=stray_draft
        )
    draft = message_add(parent=root, role="assistant", text="draft", author_model=model)
    final = message_add(
        parent=root, role="assistant", text="draft!", author_user=UserFactory(), draft=draft,
        draft_edit_distance=1,
    )  # fmt: skip
    assert final.draft_id == draft.pk and final.draft_edit_distance == 1


def test_model_written_replies_are_stored_under_their_contexts_in_order():
    project = ProjectFactory()
    model = ModelVersionFactory()
    _, first = conversation_start(project=project, text="Name a fruit.", lang="fr")
    _, second = conversation_start(project=project, text="Name a river.")

    stored = generated_replies_add(
        replies=[
            GeneratedReplies(context=first, model_version_id=model.pk, texts=["Pomme.", "Poire."]),
            GeneratedReplies(context=second, model_version_id=model.pk, texts=["The Nile."]),
        ]
    )

    assert [[m.text for m in replies] for replies in stored] == [
        ["Pomme.", "Poire."],
        ["The Nile."],
    ]
    for context, replies in zip([first, second], stored, strict=True):
        for message in replies:
            message.refresh_from_db()
            assert message.parent == context and message.depth == 1
            assert message.role == "assistant" and message.lang == context.lang
            assert message.author_model == model and message.is_synthetic
            assert message.author_user is None


def test_work_in_progress_is_kept_unmarked_or_deleted_with_its_replies():
    project = ProjectFactory()
    author = UserFactory()
    marker = {"scratch": 7}
    conversation, root = conversation_start(
        project=project, text="Draft question", meta=marker, message_meta=marker
    )
    kept = message_add(parent=root, role="assistant", text="Kept", meta=marker)
    dropped = message_add(parent=root, role="assistant", text="Dropped", meta=marker)
    message_add(parent=dropped, role="user", text="Under the dropped one")
    other, _ = conversation_start(project=project, text="Another draft", meta=marker)

    marked_messages_keep(messages=[root, kept], key="scratch", value=7, author_user=author)
    marked_messages_delete(key="scratch", value=7, keep=[root, kept])

    conversation.refresh_from_db()
    assert (conversation.meta, conversation.created_by) == ({}, author)
    assert [(m.text, m.meta, m.author_user) for m in conversation.messages.order_by("pk")] == [
        ("Draft question", {}, author),
        ("Kept", {}, author),
    ]
    assert not Conversation.objects.filter(pk=other.pk).exists()


def test_deleting_marked_work_leaves_other_marks_and_unmarked_messages():
    project = ProjectFactory()
    _, root = conversation_start(project=project, text="A prompt")
    mine = message_add(parent=root, role="assistant", text="Mine", meta={"scratch": 1})
    theirs = message_add(parent=root, role="assistant", text="Theirs", meta={"scratch": 2})

    marked_messages_delete(key="scratch", value=1)

    assert set(Message.objects.values_list("pk", flat=True)) == {root.pk, theirs.pk}
    assert not Message.objects.filter(pk=mine.pk).exists()
