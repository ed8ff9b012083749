"""The database keeps the data honest even when code goes around the services."""

import pytest
from django.db import IntegrityError, transaction

from annotations.models import Message, Ranking, RankingCandidate, RankingSet
from tests.factories import ConversationFactory, MessageFactory, ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _integrity_error(**create_kwargs) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(**create_kwargs)


def test_parent_must_be_in_the_same_conversation():
    root = MessageFactory()
    other = ConversationFactory(project=root.conversation.project)
    with (
        pytest.raises(IntegrityError, match="message_parent_same_conversation"),
        transaction.atomic(),
    ):
        Message.objects.create(
            conversation=other, parent=root, role="assistant", text="hi", depth=1
        )
    # The same reply in the parent's own conversation is fine.
    Message.objects.create(
        conversation=root.conversation, parent=root, role="assistant", text="hi", depth=1
    )


def test_moving_a_message_to_another_conversation_is_refused():
    root = MessageFactory()
    reply = Message.objects.create(
        conversation=root.conversation, parent=root, role="assistant", text="hi", depth=1
    )
    other = ConversationFactory(project=root.conversation.project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(pk=reply.pk).update(conversation=other)


def test_a_message_has_at_most_one_author():
    conversation = ConversationFactory()
    _integrity_error(
        conversation=conversation,
        role="user",
        text="x",
        author_user=UserFactory(),
        author_model=ModelVersionFactory(),
        is_synthetic=True,
    )


def test_model_written_messages_are_marked_synthetic():
    _integrity_error(
        conversation=ConversationFactory(),
        role="user",
        text="x",
        author_model=ModelVersionFactory(),
    )


def test_first_message_is_a_user_turn_or_system_prompt():
    _integrity_error(conversation=ConversationFactory(), role="assistant", text="x")


def test_depth_follows_the_parent():
    root = MessageFactory()
    _integrity_error(
        conversation=root.conversation, parent=root, role="assistant", text="x", depth=0
    )


def test_one_ranking_per_trainer_per_set():
    root = MessageFactory()
    replies = [
        Message.objects.create(
            conversation=root.conversation, parent=root, role="assistant", text=t, depth=1
        )
        for t in ("a", "b")
    ]
    ranking_set = RankingSet.objects.create(project=root.conversation.project, context=root)
    for position, reply in enumerate(replies):
        RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=position)
    trainer = UserFactory()
    order = [[replies[0].pk], [replies[1].pk]]
    Ranking.objects.create(ranking_set=ranking_set, annotator=trainer, order=order)
    with pytest.raises(IntegrityError), transaction.atomic():
        Ranking.objects.create(ranking_set=ranking_set, annotator=trainer, order=order)
    # Another trainer may rank the same set.
    Ranking.objects.create(ranking_set=ranking_set, annotator=UserFactory(), order=order)
    assert ranking_set.rankings.count() == 2


def test_a_candidate_appears_once_in_a_set():
    root = MessageFactory()
    reply = Message.objects.create(
        conversation=root.conversation, parent=root, role="assistant", text="a", depth=1
    )
    ranking_set = RankingSet.objects.create(project=root.conversation.project, context=root)
    RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=1)
