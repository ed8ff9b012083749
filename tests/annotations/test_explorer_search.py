"""The explorer's full-text search uses the GIN indexes of annotations migration 0010 on
PostgreSQL: the query's expression is the indexed one, for each configuration it picks."""

import pytest
from django.db import connection

from annotations.explorer import (
    SEARCH_CONFIGS,
    ExplorerFilters,
    conversations_explored,
    messages_matching,
    search_config,
    search_vector,
)
from annotations.explorer_sets import SetFilters, ranking_sets_explored
from annotations.models import Message
from tests.factories import ProjectFactory, ranked_set, say, start, trainers

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="full-text search indexes are PostgreSQL's"
    ),
]


FILLER = 3000


def fill(project) -> None:
    """Enough messages that do not match for the planner to prefer an index to reading them."""
    conversation = start(project, "Filler").conversation
    Message.objects.bulk_create(
        Message(conversation=conversation, role="user", text=f"Ordinary text number {i}")
        for i in range(FILLER)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_message")
        cursor.execute("ANALYZE annotations_conversation")


def plan_of(queryset) -> str:
    """The plan PostgreSQL picks for the queryset (a scan of a whole table as the last resort)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    return plan


@pytest.mark.parametrize(
    ("languages", "config"), [(["en"], "english"), (["en", "de"], "simple"), ([], "simple")]
)
def test_the_search_uses_the_index_of_the_configuration_it_picks(languages, config):
    project = ProjectFactory(languages=languages)
    assert search_config(project) == config
    fill(project)
    prompt = start(project, "How do glaciers move?")
    say(prompt, "Glaciers flow slowly downhill under their own weight.")
    say(prompt, "Rivers carve valleys.")
    matching = messages_matching(
        Message.objects.filter(conversation__project=project), "glaciers", config=config
    )
    assert matching.count() == 2
    plan = plan_of(matching)
    assert f"message_text_search_{config}" in plan, plan
    other = next(c for c in SEARCH_CONFIGS if c != config)
    assert f"message_text_search_{other}" not in plan


def test_both_explorer_lists_search_through_the_index(project):
    project.languages = ["en"]
    project.save(update_fields=["languages"])
    r1, r2 = trainers(project, 2)
    prompt = start(project, "Tell me about lighthouses")
    replies = [say(prompt, "Lighthouses guide ships."), say(prompt, "Keepers lived there.")]
    ranked_set(project, prompt, replies, [(r1, [[0], [1]]), (r2, [[1], [0]])])
    fill(project)

    conversations = conversations_explored(project=project, filters=ExplorerFilters(q="lighthouse"))
    assert [c.pk for c in conversations] == [prompt.conversation_id]
    assert "message_text_search_english" in plan_of(conversations)
    sets = ranking_sets_explored(project=project, filters=SetFilters(q="keepers"))
    assert len(sets) == 1
    assert "message_text_search_english" in plan_of(sets)


def test_only_indexed_configurations_can_be_searched_with():
    with pytest.raises(ValueError, match="german"):
        search_vector("german")


def test_a_capped_read_of_a_search_still_goes_through_the_index(project):
    """Under a LIMIT (a capped count, a page) the planner would rather walk the conversations
    and compute their messages' text vectors one by one: the matches' subquery stays whole."""
    project.languages = ["en"]
    project.save(update_fields=["languages"])
    conversation = start(project, "Filler").conversation
    Message.objects.bulk_create(
        Message(conversation=conversation, role="user", text=f"A common word, number {i}")
        for i in range(FILLER)
    )
    for i in range(200):
        start(project, f"Another common question {i}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_message")
        cursor.execute("ANALYZE annotations_conversation")
    found = conversations_explored(project=project, filters=ExplorerFilters(q="common"))
    for read in (found.order_by()[:101], found[:25]):
        plan = plan_of(read)
        assert "message_text_search_english" in plan, plan
    assert found.count() == 201
