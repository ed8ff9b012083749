"""Exports of real data nobody here wrote: Open Assistant's sample trees, imported, then exported,
checked against counts and pairs worked out from the raw file on its own."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from annotations.models import Message
from labelling.importers import prompt_file_import
from tests.exports.conftest import OASST_MISSING, OASST_TREES, export

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not OASST_TREES.is_file(), reason=OASST_MISSING),
]


# --- The raw file, read without any of the app's code ------------------------------------------


def raw_trees() -> list[dict]:
    with OASST_TREES.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def walk(node: dict, path: tuple = ()) -> Iterator[tuple[dict, tuple]]:
    """Every node that is not deleted (nor under a deleted one), with its ancestors."""
    if node.get("deleted") is True:
        return
    yield node, path
    for reply in node.get("replies") or []:
        yield from walk(reply, (*path, node))


def ranked_siblings(node: dict) -> list[dict]:
    ranked = [
        r for r in node.get("replies") or [] if r.get("rank") is not None and not r.get("deleted")
    ]
    return ranked if len(ranked) >= 2 else []


def expected_pairs() -> set[tuple[str, str]]:
    """(better message id, worse message id) for every pair of ranked siblings of distinct rank."""
    pairs = set()
    for tree in raw_trees():
        for node, _ in walk(tree["prompt"]):
            ranked = ranked_siblings(node)
            for x in ranked:
                for y in ranked:
                    if x["rank"] < y["rank"]:
                        pairs.add((x["message_id"], y["message_id"]))
    return pairs


def below_top() -> set[str]:
    """Ranked replies that are not among the best of their siblings."""
    out = set()
    for tree in raw_trees():
        for node, _ in walk(tree["prompt"]):
            ranked = ranked_siblings(node)
            if ranked:
                best = min(r["rank"] for r in ranked)
                out |= {r["message_id"] for r in ranked if r["rank"] != best}
    return out


def expected_sft(*, best_path_only: bool = False) -> dict[str, list[str]]:
    """Human-written assistant message id -> its thread's texts, for threads with no
    model-written assistant turn (and, with best_path_only, none ranked below the top)."""
    off_path = below_top() if best_path_only else set()
    rows = {}
    for tree in raw_trees():
        for node, path in walk(tree["prompt"]):
            thread = (*path, node)
            if node["role"] != "assistant" or node.get("synthetic") is True:
                continue
            if any(n["role"] == "assistant" and n.get("synthetic") is True for n in thread):
                continue
            if any(n["message_id"] in off_path for n in thread):
                continue
            rows[node["message_id"]] = [n["text"] for n in thread]
    return rows


def expected_prompts() -> list[str]:
    seen, prompts = set(), []
    for tree in raw_trees():
        text = tree["prompt"]["text"]
        key = re.sub(r"\s+", " ", text).strip().casefold()
        if key not in seen:
            seen.add(key)
            prompts.append(text)
    return prompts


# --- The export ----------------------------------------------------------------------------------


@pytest.fixture
def oasst(project):
    report = prompt_file_import(
        project=project, source=OASST_TREES.read_bytes(), filename="oasst.jsonl"
    )
    assert report.ok, report.errors
    assert report.format == "oasst" and report.conversations == 100
    return project


def external_ids(ids) -> dict[int, str]:
    return dict(Message.objects.filter(pk__in=list(ids)).values_list("pk", "external_id"))


def test_the_raw_file_holds_what_its_readme_says():
    assert len(expected_pairs()) == 754


def test_preferences_have_one_row_per_ordered_pair_of_ranked_siblings(oasst, tmp_path):
    out = export(oasst, "preferences", tmp_path)
    rows = out.all_rows
    expected = expected_pairs()
    assert len(rows) == len(expected) == 754
    names = external_ids(
        [r["meta"]["chosen_id"] for r in rows] + [r["meta"]["rejected_id"] for r in rows]
    )
    got = [(names[r["meta"]["chosen_id"]], names[r["meta"]["rejected_id"]]) for r in rows]
    assert len(set(got)) == len(got)  # no pair twice
    assert set(got) == expected  # so chosen always has the lower (better) OA rank
    ranks = {n["message_id"]: n.get("rank") for t in raw_trees() for n, _ in walk(t["prompt"])}
    texts = {n["message_id"]: n["text"] for t in raw_trees() for n, _ in walk(t["prompt"])}
    for row, (chosen, rejected) in zip(rows, got, strict=True):
        assert ranks[chosen] < ranks[rejected]
        assert row["chosen"] == [{"role": "assistant", "content": texts[chosen]}]
        assert row["rejected"] == [{"role": "assistant", "content": texts[rejected]}]
        assert row["prompt"][-1]["role"] == "user" and row["prompt"][0]["role"] == "user"
        meta = row["meta"]
        assert meta["margin"] == 1.0 and meta["imported"] is True and meta["annotator"] is None
    assert (
        out.manifest["length_bias"]["chosen_longer"]
        + out.manifest["length_bias"]["chosen_shorter"]
        + out.manifest["length_bias"]["same_length"]
        == 754
    )


def test_sft_rows_are_the_human_threads_of_the_file(oasst, tmp_path):
    expected = expected_sft()
    out = export(oasst, "sft", tmp_path)
    rows = out.all_rows
    names = external_ids(r["meta"]["message_id"] for r in rows)
    got = {names[r["meta"]["message_id"]]: [m["content"] for m in r["messages"]] for r in rows}
    assert len(rows) == len(got) == len(expected)
    assert got == expected
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles[-1] == "assistant"
        assert roles == ["user", "assistant"] * (len(roles) // 2)
    assert out.manifest["rows_per_source"] == {"oasst": len(expected)}
    under_model_turns = sum(
        1
        for t in raw_trees()
        for n, path in walk(t["prompt"])
        if n["role"] == "assistant"
        and n.get("synthetic") is not True
        and any(p["role"] == "assistant" and p.get("synthetic") is True for p in path)
    )
    assert out.left_out.get("threads_with_model_turns", 0) == under_model_turns
    # The file's model-written replies are there, and none of them ends a row.
    synthetic = {n["message_id"] for t in raw_trees() for n, _ in walk(t["prompt"])
                 if n["role"] == "assistant" and n.get("synthetic") is True}  # fmt: skip
    assert synthetic and synthetic.isdisjoint(got)


def test_sft_best_path_only_follows_the_best_ranked_replies(oasst, tmp_path):
    expected = expected_sft(best_path_only=True)
    assert 0 < len(expected) < len(expected_sft())
    rows = export(oasst, "sft", tmp_path, best_path_only=True).all_rows
    names = external_ids(r["meta"]["message_id"] for r in rows)
    assert {names[r["meta"]["message_id"]] for r in rows} == set(expected)


def test_prompts_are_the_distinct_first_turns(oasst, tmp_path):
    expected = expected_prompts()
    out = export(oasst, "prompts", tmp_path)
    got = sorted(r["prompt"][0]["content"] for r in out.all_rows)
    assert got == sorted(expected)
    assert all(len(r["prompt"]) == 1 and r["prompt"][0]["role"] == "user" for r in out.all_rows)
    assert out.left_out.get("duplicate_prompts", 0) == 100 - len(expected)


def test_rankings_hold_every_ranked_sibling_set(oasst, tmp_path):
    rows = export(oasst, "rankings", tmp_path).all_rows
    sets = [ranked_siblings(n) for t in raw_trees() for n, _ in walk(t["prompt"])]
    sets = [s for s in sets if s]
    assert len(rows) == len(sets) == 212
    by_texts = {tuple(sorted(r["text"] for r in s)): s for s in sets}
    for row in rows:
        completions = [c[0]["content"] for c in row["completions"]]
        ranked = by_texts[tuple(sorted(completions))]
        rank_of = {r["text"]: r["rank"] for r in ranked}
        (ranking,) = row["rankings"]
        assert ranking["imported"] is True and ranking["annotator"] is None
        levels = [sorted({rank_of[completions[i]] for i in group}) for group in ranking["order"]]
        assert all(len(level) == 1 for level in levels)  # a group is one rank
        assert [level[0] for level in levels] == sorted({r["rank"] for r in ranked})
        assert row["consensus"] == ranking["order"]
