"""Bulk imports of conversation trees: messages by depth, model authors, rankings, checks."""

import pytest
from django.core.exceptions import ValidationError

from annotations.imports import (
    ImportedConversation,
    ImportedMessage,
    ImportedRanking,
    conversations_import_bulk,
)
from annotations.models import Conversation, Message, ModelVersion, Ranking, RankingSet
from annotations.selectors import thread_to

pytestmark = pytest.mark.django_db

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"


def test_prompts_become_one_turn_conversations_in_order(project):
    counts = conversations_import_bulk(
        project=project,
        source=Conversation.Source.PROMPT,
        conversations=(
            ImportedConversation((ImportedMessage(USER, f"Prompt {i}", "en"),), "", {"line": i})
            for i in range(3)
        ),
    )
    assert (counts.conversations, counts.messages, counts.ranking_sets) == (3, 3, 0)
    stored = Message.objects.filter(conversation__project=project).order_by("pk")
    assert [(m.text, m.depth, m.parent_id, m.conversation.meta) for m in stored] == [
        (f"Prompt {i}", 0, None, {"line": i}) for i in range(3)
    ]
    assert {m.conversation.source for m in stored} == {"prompt"}
    assert [(m.meta, m.external_id, m.is_synthetic, m.author_model_id) for m in stored] == [
        ({}, "", False, None)
    ] * 3


def test_a_tree_keeps_its_branches_authors_and_rankings(project):
    tree = ImportedConversation(
        messages=[
            ImportedMessage(SYSTEM, "Be brief.", "en", external_id="s"),
            ImportedMessage(USER, "Hi?", "de", parent=0, external_id="u"),
            ImportedMessage(ASSISTANT, "A", "de", parent=1, model="oa/model-a", meta={"rank": 1}),
            ImportedMessage(ASSISTANT, "B", "de", parent=1, synthetic=True, meta={"rank": 0}),
            ImportedMessage(ASSISTANT, "C", "de", parent=1, meta={"rank": 0}),
            ImportedMessage(USER, "More?", "de", parent=2),
        ],
        external_id="tree-1",
        meta={"tree_state": "ready"},
        rankings=[ImportedRanking(context=1, candidates=[2, 3, 4], order=[[3, 4], [2]])],
    )
    counts = conversations_import_bulk(
        project=project, source=Conversation.Source.IMPORT, conversations=[tree]
    )
    assert (counts.conversations, counts.messages, counts.ranking_sets) == (1, 6, 1)

    conversation = Conversation.objects.get(project=project)
    assert (conversation.external_id, conversation.meta) == ("tree-1", {"tree_state": "ready"})
    last = conversation.messages.get(text="More?")
    assert [(m.role, m.text, m.depth) for m in thread_to(last)] == [
        (SYSTEM, "Be brief.", 0), (USER, "Hi?", 1), (ASSISTANT, "A", 2), (USER, "More?", 3),
    ]  # fmt: skip
    by_text = {m.text: m for m in conversation.messages.all()}
    model = ModelVersion.objects.get(name="oa/model-a")
    assert (model.kind, model.source, model.notes) == ("policy", "oa/model-a", "imported")
    assert by_text["A"].author_model == model and by_text["A"].is_synthetic
    assert by_text["B"].author_model is None and by_text["B"].is_synthetic
    assert not by_text["C"].is_synthetic and by_text["C"].meta == {"rank": 0}
    assert (by_text["Hi?"].external_id, by_text["Hi?"].lang) == ("u", "de")

    ranking_set = RankingSet.objects.get(project=project)
    b, c, a = by_text["B"].pk, by_text["C"].pk, by_text["A"].pk
    assert ranking_set.context == by_text["Hi?"] and ranking_set.state == "complete"
    assert ranking_set.consensus == [[b, c], [a]]
    assert list(ranking_set.entries.values_list("message_id", flat=True)) == [a, b, c]
    assert list(Ranking.objects.values_list("annotator", "order")) == [(None, [[b, c], [a]])]


def test_a_known_model_is_not_registered_again(project):
    ModelVersion.objects.create(name="known", source="org/known")
    conversation = ImportedConversation(
        [ImportedMessage(USER, "Q", "en"), ImportedMessage(ASSISTANT, "R", "en", 0, model="known")]
    )
    conversations_import_bulk(project=project, source="import", conversations=[conversation])
    assert ModelVersion.objects.get(name="known").source == "org/known"


@pytest.mark.parametrize(
    "messages, why",
    [
        ([ImportedMessage(ASSISTANT, "R", "en")], "an assistant turn cannot come as the first"),
        (
            [ImportedMessage(USER, "Q", "en"), ImportedMessage(USER, "Q", "en", parent=0)],
            "message 1: a user turn cannot come after a user turn",
        ),
        (
            [ImportedMessage(USER, "Q", "en"), ImportedMessage(ASSISTANT, "R", "en", parent=1)],
            "message 1: its parent must come before it",
        ),
    ],
)
def test_a_tree_out_of_order_stores_nothing(project, messages, why):
    good = ImportedConversation([ImportedMessage(USER, "fine", "en")])
    with pytest.raises(ValidationError, match=why):
        conversations_import_bulk(
            project=project,
            source="import",
            conversations=[good, ImportedConversation(messages)],
        )
    assert not Conversation.objects.exists()


def test_nothing_to_import_stores_nothing(project):
    counts = conversations_import_bulk(project=project, source="import", conversations=[])
    assert (counts.conversations, counts.messages, counts.ranking_sets) == (0, 0, 0)
    assert not Conversation.objects.exists()
