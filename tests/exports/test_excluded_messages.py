"""Messages a lead excluded never leave: not as rows, not inside the rows built on them."""

from __future__ import annotations

import pytest

from annotations.curation import message_exclude, message_include
from tests.exports.conftest import export, one_split
from tests.factories import MembershipFactory, UserFactory, ranked_set, say, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(project):
    def member(name):
        return MembershipFactory(project=project, user=UserFactory(username=name)).user

    return {name: member(name) for name in ("r1", "r2", "w1", "w2")}


def test_sft_leaves_out_every_thread_through_an_excluded_message(project, people, lead, tmp_path):
    w1, w2 = people["w1"], people["w2"]
    u1 = start(project, "What is tea?", user=w1)
    a1 = say(u1, "A drink.", user=w2)
    u2 = say(a1, "Hot or cold?", user=w1)
    say(u2, "Either.", user=w2)
    say(u1, "Leaves in water.", user=w1)

    message_exclude(project=project, message=a1, actor=lead, reason="Copied text")
    out = export(project, "sft", tmp_path / "excluded", **one_split())
    finals = [row["messages"][-1]["content"] for row in out.rows["train"]]
    assert finals == ["Leaves in water."]  # a1's own row and the thread under it are gone
    assert "A drink." not in out.raw["train"].decode()
    assert out.left_out["threads_with_excluded_messages"] == 1

    message_include(project=project, message=a1, actor=lead)
    again = export(project, "sft", tmp_path / "included", **one_split())
    assert len(again.rows["train"]) == 3


def test_prompts_leave_out_excluded_prompts_and_those_under_an_excluded_system_prompt(
    project, lead, tmp_path
):
    kept = start(project, "Keep me", source="prompt")
    dropped = start(project, "Drop me", source="prompt")
    system = start(project, "Be brief.", role="system")
    say(system, "Under the system prompt")
    message_exclude(project=project, message=dropped, actor=lead, reason="Offensive")
    message_exclude(project=project, message=system, actor=lead, reason="Leaks a secret")

    out = export(project, "prompts", tmp_path, **one_split())
    assert [row["meta"]["message_id"] for row in out.rows["train"]] == [kept.pk]


@pytest.mark.parametrize("kind", ["preferences", "rankings"])
def test_sets_drop_excluded_candidates_and_sets_built_on_an_excluded_context(
    project, people, lead, tmp_path, kind
):
    r1, r2 = people["r1"], people["r2"]
    context = start(project, "Which?")
    replies = [say(context, f"reply {x}") for x in "abc"]
    first = ranked_set(project, context, replies, [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]])])
    other_context = start(project, "Another question")
    others = [say(other_context, f"other {x}") for x in "ab"]
    ranked_set(project, other_context, others, [(r1, [[0], [1]]), (r2, [[1], [0]])])

    message_exclude(project=project, message=replies[0], actor=lead, reason="Harmful")
    message_exclude(project=project, message=other_context, actor=lead, reason="Spam prompt")
    out = export(project, kind, tmp_path, **one_split())
    data = out.raw["train"].decode()
    assert "reply a" not in data and "Another question" not in data and "other a" not in data
    assert "reply b" in data and "reply c" in data
    assert out.left_out["sets_on_excluded_messages"] == 1
    assert out.left_out["candidates_excluded_by_leads"] == 1
    if kind == "rankings":
        (row,) = out.rows["train"]
        assert row["meta"]["group_id"] == first.pk
        assert row["meta"]["completion_ids"] == [replies[1].pk, replies[2].pk]
        assert row["consensus"] == [[0], [1]]
    else:
        assert [
            (r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in out.rows["train"]
        ] == [("reply b", "reply c")]


def test_an_excluded_rewrite_leaves_the_ranking_without_it(project, people, lead, tmp_path):
    r1, r2 = people["r1"], people["r2"]
    context = start(project, "Which?")
    replies = [say(context, f"reply {x}") for x in "ab"]
    the_set = ranked_set(
        project, context, replies, [(r1, [[0], [1]]), (r2, [[0], [1]])], rewrites={1: "REWRITTEN"}
    )
    rewrite = the_set.rankings.get(annotator=r2).rewrite
    message_exclude(project=project, message=rewrite, actor=lead, reason="Plagiarised")
    for kind, extra in (("rankings", {}), ("preferences", {"include_rewrites": True}), ("sft", {})):
        out = export(project, kind, tmp_path / kind, **one_split(**extra))
        assert "REWRITTEN" not in out.raw["train"].decode(), kind
    rankings = export(project, "rankings", tmp_path / "again", **one_split()).rows["train"]
    assert [r["rewrite"] for r in rankings[0]["rankings"]] == [None, None]
    assert len(rankings[0]["rankings"]) == 2  # the order itself still counts
