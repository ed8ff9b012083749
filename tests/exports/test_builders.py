"""The datasets themselves: what each kind of export holds for hand-built data, what never leaves,
how rows are split, that the same choices give the same bytes, and length bias."""

from __future__ import annotations

import itertools

import pytest

from annotations.models import Label, Message, Ranking
from annotations.reports import prompt_report_create, prompt_report_decide
from tests.exports.conftest import export, one_split, pseudonym_of
from tests.factories import (
    VARIED_RUNS,
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    ranked_set,
    say,
    start,
    varied_data,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(project):
    """Three rankers and two writers, members of the project."""

    def member(name):
        return MembershipFactory(project=project, user=UserFactory(username=name)).user

    return {name: member(name) for name in ("r1", "r2", "r3", "w1", "w2")}


def texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


def pairs_of(rows: list[dict]) -> list[tuple[str, str]]:
    """(chosen, rejected) reply texts of preference rows, in file order."""
    return [(row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows]


def candidates(context: Message, labels: str, **authors) -> list[Message]:
    """One assistant reply under `context` per letter of `labels`, text "reply <letter>"."""
    return [say(context, f"reply {x}", **authors) for x in labels]


# --- sft ----------------------------------------------------------------------------------------


def test_sft_has_one_row_per_human_assistant_message_with_its_thread(project, people, tmp_path):
    w1, w2 = people["w1"], people["w2"]
    u1 = start(project, "What is tea?", user=w1)
    a1 = say(u1, "A drink.", user=w2)
    u2 = say(a1, "Hot or cold?", user=w1)
    a2 = say(u2, "Either.", user=w2)
    a1b = say(u1, "Leaves in water.", user=w1)
    other = start(project, "Unanswered prompt")  # no assistant turn: no row

    out = export(project, "sft", tmp_path, **one_split())

    rows = out.rows["train"]
    assert [texts(r["messages"]) for r in rows] == [
        ["What is tea?", "A drink."],
        ["What is tea?", "A drink.", "Hot or cold?", "Either."],
        ["What is tea?", "Leaves in water."],
    ]
    assert [[m["role"] for m in r["messages"]] for r in rows][1] == [
        "user", "assistant", "user", "assistant"
    ]  # fmt: skip
    meta = rows[1]["meta"]
    assert meta["message_id"] == a2.pk and meta["conversation_id"] == a2.conversation_id
    assert meta["message_ids"] == [u1.pk, a1.pk, u2.pk, a2.pk]
    assert meta["annotator"] == pseudonym_of(project, w2)
    assert meta["authors"] == [
        {"model": None, "annotator": pseudonym_of(project, u)} for u in (w1, w2, w1, w2)
    ]
    assert meta["source"] == "demonstration" and meta["lang"] == "en"
    assert rows[2]["meta"]["message_id"] == a1b.pk
    assert other.pk not in {m for r in rows for m in r["meta"]["message_ids"]}
    assert out.manifest["rows_per_source"] == {"demonstration": 3}


def test_sft_leaves_out_threads_with_a_model_written_assistant_turn(project, people, tmp_path):
    model = ModelVersionFactory(name="tiny-v1")
    u1 = start(project, "Plan a trip.")
    m1 = say(u1, "Model says: Rome.", model=model)
    u2 = say(m1, "Cheaper?")
    say(u2, "Human says: Naples.", user=people["w1"])
    say(u1, "Human says: Paris.", user=people["w2"])

    default = export(project, "sft", tmp_path / "default", **one_split())
    assert [texts(r["messages"])[-1] for r in default.rows["train"]] == ["Human says: Paris."]
    assert default.left_out["threads_with_model_turns"] == 1

    allowed = export(project, "sft", tmp_path / "allowed", **one_split(allow_model_turns=True))
    rows = allowed.rows["train"]
    # The model's own reply is never a row: only human-written messages end one.
    assert [texts(r["messages"])[-1] for r in rows] == ["Human says: Naples.", "Human says: Paris."]
    assert [a["model"] for a in rows[0]["meta"]["authors"]] == [None, "tiny-v1", None, None]
    assert rows[0]["meta"]["authors"][1] == {"model": "tiny-v1", "annotator": None}


def test_sft_keeps_a_draft_based_reply_and_says_which_model_drafted_it(project, people, tmp_path):
    model = ModelVersionFactory(name="drafter")
    u1 = start(project, "Summarise this.")
    draft = say(u1, "Draft text.", model=model)
    final = say(u1, "Edited text.", user=people["w1"], draft=draft)
    rows = export(project, "sft", tmp_path, **one_split()).rows["train"]
    assert len(rows) == 1
    meta = rows[0]["meta"]
    assert meta["message_id"] == final.pk and meta["draft_id"] == draft.pk
    assert meta["draft_model"] == "drafter" and meta["edit_distance"] == 3


def test_scratch_messages_never_leave(project, people, tmp_path):
    u1 = start(project, "Kept prompt")
    a1 = say(u1, "Kept answer", user=people["w1"])
    scratch = {"scratch_for_task": 99}
    u2 = say(a1, "SCRATCH user turn", user=people["w1"], meta=scratch)
    say(u2, "SCRATCH assistant turn", user=people["w1"], meta=scratch)
    u3 = say(a1, "Submitted user turn", user=people["w1"])
    say(u3, "SCRATCH reply", user=people["w1"], meta=scratch)
    # A blank task's conversation is scratch from its root.
    root = start(project, "SCRATCH root", user=people["w2"])
    Message.objects.filter(pk=root.pk).update(meta=scratch)
    say(root, "Below a scratch root", user=people["w2"])

    for kind in ("sft", "prompts"):
        out = export(project, kind, tmp_path / kind, **one_split())
        data = b"".join(out.raw.values())
        assert b"SCRATCH" not in data and b"Below a scratch root" not in data, kind
    sft = export(project, "sft", tmp_path / "again", **one_split())
    assert [texts(r["messages"]) for r in sft.rows["train"]] == [["Kept prompt", "Kept answer"]]
    # The two scratch replies and the reply under the scratch root.
    assert sft.left_out["threads_with_unsubmitted_turns"] == 3


def test_best_path_only_drops_threads_through_replies_ranked_below_the_top(
    project, people, tmp_path
):
    u1 = start(project, "Pick a colour.")
    a, b, c = candidates(u1, "abc", user=people["w1"])
    follow_b = say(say(b, "Why b?", user=people["w2"]), "Because.", user=people["w1"])
    follow_a = say(say(a, "Why a?", user=people["w2"]), "It is best.", user=people["w1"])
    ranked_set(project, u1, [a, b, c], [(people[r], [[0], [1], [2]]) for r in ("r1", "r2", "r3")])

    every = export(project, "sft", tmp_path / "every", **one_split())
    assert len(every.rows["train"]) == 5

    best = export(project, "sft", tmp_path / "best", **one_split(best_path_only=True))
    ends = [r["meta"]["message_id"] for r in best.rows["train"]]
    assert ends == [a.pk, follow_a.pk]
    assert follow_b.pk not in ends
    assert best.left_out["threads_off_the_best_path"] == 3  # b, c and the thread under b


def test_sources_come_from_the_dataset_an_import_named(project, people, tmp_path):
    def convo(text, dataset=None):
        meta = {"dataset": dataset} if dataset else None
        source = "import" if dataset else "demonstration"
        say(start(project, text, meta=meta, source=source), f"answer to {text}", user=people["w1"])

    for text in ("o1", "o2", "o3"):
        convo(text, "oasst")
    convo("d1", "dolly")
    convo("h1")

    every = export(project, "sft", tmp_path / "every", **one_split())
    assert every.manifest["rows_per_source"] == {"demonstration": 1, "dolly": 1, "oasst": 3}
    assert {r["meta"]["source"] for r in every.rows["train"]} == {"demonstration", "dolly", "oasst"}

    kept = export(
        project, "sft", tmp_path / "kept", **one_split(sources=["oasst", "demonstration"])
    )
    assert kept.manifest["rows_per_source"] == {"demonstration": 1, "oasst": 3}
    assert kept.left_out["conversations_of_other_sources"] == 1

    dropped = export(project, "sft", tmp_path / "dropped", **one_split(exclude_sources=["oasst"]))
    assert dropped.manifest["rows_per_source"] == {"demonstration": 1, "dolly": 1}
    assert sorted(texts(r["messages"])[0] for r in dropped.rows["train"]) == ["d1", "h1"]


def test_sft_exclude_annotators_drops_every_thread_they_wrote_a_turn_of(project, people, tmp_path):
    u1 = start(project, "Q", user=people["w2"])
    a1 = say(u1, "Excluded trainer's answer", user=people["w1"])
    a2 = say(say(a1, "More?", user=people["w2"]), "Kept trainer's answer", user=people["w2"])
    other = say(start(project, "Q2", user=people["w2"]), "Fine answer", user=people["w2"])

    out = export(project, "sft", tmp_path, **one_split(exclude_annotators=["w1"]))
    ends = [r["meta"]["message_id"] for r in out.rows["train"]]
    # a2's thread carries w1's reply as an assistant turn: it would train on their text.
    assert ends == [other.pk]
    assert a2.pk not in ends
    assert b"Excluded trainer" not in out.raw["train"]


def test_sft_exclude_flags_drops_replies_flagged_by_a_label_or_a_ranker(project, people, tmp_path):
    u1 = start(project, "Q")
    by_label, by_ranker, clean = candidates(u1, "xyz", user=people["w1"])
    Label.objects.create(message=by_label, name="harmful", value=1, annotator=people["r1"])
    Label.objects.create(message=clean, name="harmful", value=0, annotator=people["r1"])
    ranked_set(
        project, u1, [by_label, by_ranker, clean],
        [(people["r2"], [[2], [0], [1]])], flags={0: {1: ["harmful"]}},
    )  # fmt: skip

    every = export(project, "sft", tmp_path / "every", **one_split())
    assert len(every.rows["train"]) == 3
    labelled = next(r for r in every.rows["train"] if r["meta"]["message_id"] == by_label.pk)
    assert labelled["meta"]["labels"] == [
        {"name": "harmful", "value": 1, "annotator": pseudonym_of(project, people["r1"])}
    ]

    out = export(project, "sft", tmp_path / "out", **one_split(exclude_flags=["harmful"]))
    assert [r["meta"]["message_id"] for r in out.rows["train"]] == [clean.pk]
    assert out.left_out["messages_flagged"] == 2


def test_sft_dates_are_inclusive_utc_days(project, people, tmp_path):
    import datetime as dt

    u1 = start(project, "Q")
    early, late = candidates(u1, "el", user=people["w1"])
    Message.objects.filter(pk=early.pk).update(
        created_at=dt.datetime(2024, 3, 1, 23, 59, tzinfo=dt.UTC)
    )
    Message.objects.filter(pk=late.pk).update(
        created_at=dt.datetime(2024, 3, 2, 0, 0, tzinfo=dt.UTC)
    )
    ids = {
        rng: [r["meta"]["message_id"] for r in export(
            project, "sft", tmp_path / "-".join(rng), **one_split(since=rng[0], until=rng[1])
        ).rows["train"]]
        for rng in (("2024-03-01", "2024-03-01"), ("2024-03-02", "2024-03-09"),
                    ("2024-02-01", "2024-03-02"))
    }  # fmt: skip
    assert ids[("2024-03-01", "2024-03-01")] == [early.pk]
    assert ids[("2024-03-02", "2024-03-09")] == [late.pk]
    assert ids[("2024-02-01", "2024-03-02")] == [early.pk, late.pk]


# --- preferences --------------------------------------------------------------------------------


@pytest.fixture
def four(project, people):
    """A complete set of four replies a > b > c > d by all three rankers."""
    context = say(start(project, "Tell me a joke."), "Why?", user=people["w1"])
    context = say(context, "Because I asked.", user=people["w2"])
    replies = candidates(context, "abcd", user=people["w1"])
    the_set = ranked_set(
        project, context, replies, [(people[r], [[0], [1], [2], [3]]) for r in ("r1", "r2", "r3")]
    )
    return the_set, context, replies


def test_an_untied_consensus_of_four_gives_six_pairs(project, people, four, tmp_path):
    the_set, context, replies = four
    out = export(project, "preferences", tmp_path, **one_split())
    rows = out.rows["train"]
    assert pairs_of(rows) == [
        (f"reply {x}", f"reply {y}") for x, y in itertools.combinations("abcd", 2)
    ]
    for row in rows:
        assert list(row) == ["prompt", "chosen", "rejected", "meta"]
        assert row["prompt"] == [
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why?"},
            {"role": "user", "content": "Because I asked."},
        ]
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        meta = row["meta"]
        assert meta["group_id"] == the_set.pk and meta["margin"] == 1.0
        assert meta["pair_source"] == "consensus" and meta["annotator"] is None
        assert meta["context_id"] == context.pk
        assert meta["conversation_id"] == context.conversation_id
        assert meta["rankings"] == 3 and meta["agreement"] == 1.0 and meta["imported"] is False
        assert meta["chosen_author"] == pseudonym_of(project, people["w1"])
        assert meta["chosen_model"] is None and meta["chosen_flags"] == []
    ids = {r.text: r.pk for r in replies}
    assert rows[0]["meta"]["chosen_id"] == ids["reply a"]
    assert rows[0]["meta"]["rejected_id"] == ids["reply b"]


@pytest.mark.parametrize(
    ("strategy", "order", "expected"),
    [
        ("all", [[0], [1], [2], [3]], ["ab", "ac", "ad", "bc", "bd", "cd"]),
        ("best_vs_rest", [[0], [1], [2], [3]], ["ab", "ac", "ad"]),
        ("adjacent", [[0], [1], [2], [3]], ["ab", "bc", "cd"]),
        ("all", [[0], [1, 2], [3]], ["ab", "ac", "ad", "bd", "cd"]),
        ("best_vs_rest", [[0], [1, 2], [3]], ["ab", "ac", "ad"]),
        ("adjacent", [[0], [1, 2], [3]], ["ab", "ac", "bd", "cd"]),
        ("best_vs_rest", [[0, 1], [2], [3]], ["ac", "bc", "ad", "bd"]),
    ],
)
def test_pair_strategies(project, people, tmp_path, strategy, order, expected):
    context = start(project, "Q")
    ranked_set(
        project, context, candidates(context, "abcd"), [(people[r], order) for r in ("r1", "r2")]
    )
    rows = export(project, "preferences", tmp_path, **one_split(pair_strategy=strategy)).rows
    got = sorted(c[-1] + r[-1] for c, r in pairs_of(rows["train"]))
    assert got == sorted(expected)


def test_ties_are_skipped_or_kept_with_margin_zero(project, people, tmp_path):
    context = start(project, "Q")
    replies = candidates(context, "abcd")
    ranked_set(project, context, replies, [(people[r], [[0], [1, 2], [3]]) for r in ("r1", "r2")])

    skipped = export(project, "preferences", tmp_path / "skip", **one_split()).rows["train"]
    assert len(skipped) == 5 and ("reply b", "reply c") not in pairs_of(skipped)
    assert {r["meta"]["margin"] for r in skipped} == {1.0}

    kept = export(project, "preferences", tmp_path / "keep", **one_split(ties="keep")).rows["train"]
    assert len(kept) == 6
    tied = [r for r in kept if r["meta"]["margin"] == 0]
    # The earlier candidate of the set is "chosen"; the margin says there is no preference.
    assert pairs_of(tied) == [("reply b", "reply c")]


def test_margin_is_the_share_for_minus_the_share_against(project, people, tmp_path):
    context = start(project, "Q")
    replies = candidates(context, "abc")
    the_set = ranked_set(
        project,
        context,
        replies,
        [
            (people["r1"], [[0], [1], [2]]),  # a > b > c
            (people["r2"], [[0], [2], [1]]),  # a > c > b
            (people["r3"], [[1], [0], [2]]),  # b > a > c
        ],
    )
    a, b, c = the_set.ids
    assert the_set.consensus == [[a], [b], [c]]
    rows = export(project, "preferences", tmp_path, **one_split()).rows["train"]
    margins = {
        (r["meta"]["chosen_id"], r["meta"]["rejected_id"]): r["meta"]["margin"] for r in rows
    }
    # a>b: two for, one against: 2/3 - 1/3; a>c: all three; b>c: two for, one against.
    assert margins == {
        (a, b): pytest.approx(1 / 3, abs=1e-6),
        (a, c): 1.0,
        (b, c): pytest.approx(1 / 3, abs=1e-6),
    }


def test_a_ranking_that_ties_a_pair_counts_for_neither_side(project, people, tmp_path):
    context = start(project, "Q")
    the_set = ranked_set(
        project,
        context,
        candidates(context, "abc"),
        [
            (people["r1"], [[0], [1], [2]]),
            (people["r2"], [[0], [1], [2]]),
            (people["r3"], [[0, 1], [2]]),  # a and b tied
        ],
    )
    a, b, _ = the_set.ids
    rows = export(project, "preferences", tmp_path, **one_split()).rows["train"]
    margin = next(r["meta"]["margin"] for r in rows if r["meta"]["chosen_id"] == a
                  and r["meta"]["rejected_id"] == b)  # fmt: skip
    assert margin == pytest.approx(2 / 3, abs=1e-6)


def test_pairs_from_annotator_gives_each_trainers_own_pairs(project, people, tmp_path):
    context = start(project, "Q")
    orders = {"r1": [[0], [1], [2]], "r2": [[0], [2], [1]], "r3": [[1], [0], [2]]}
    the_set = ranked_set(
        project, context, candidates(context, "abc"), [(people[r], o) for r, o in orders.items()]
    )
    out = export(project, "preferences", tmp_path, **one_split(pairs_from="annotator"))
    rows = out.rows["train"]
    assert len(rows) == 9
    by_trainer: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        assert row["meta"]["pair_source"] == "annotator"
        assert row["meta"]["group_id"] == the_set.pk
        by_trainer.setdefault(row["meta"]["annotator"], []).append(
            (row["chosen"][0]["content"][-1], row["rejected"][0]["content"][-1])
        )
    assert by_trainer == {
        pseudonym_of(project, people["r1"]): [("a", "b"), ("a", "c"), ("b", "c")],
        pseudonym_of(project, people["r2"]): [("a", "c"), ("a", "b"), ("c", "b")],
        pseudonym_of(project, people["r3"]): [("b", "a"), ("b", "c"), ("a", "c")],
    }
    # The margin is still the set's: r3's b>a row says most trainers disagree.
    r3_ba = next(r for r in rows if r["meta"]["annotator"] == pseudonym_of(project, people["r3"]))
    assert r3_ba["meta"]["margin"] == pytest.approx(-1 / 3, abs=1e-6)


@pytest.fixture
def split_vote(project, people):
    """r1: a > b > c; r2 and r3: b > a > c. The consensus is b > a > c."""
    context = start(project, "Q")
    the_set = ranked_set(
        project,
        context,
        candidates(context, "abc"),
        [
            (people["r1"], [[0], [1], [2]]),
            (people["r2"], [[1], [0], [2]]),
            (people["r3"], [[1], [0], [2]]),
        ],
        flags={1: {2: ["untruthful"]}},
        rewrites={1: "R2 REWRITE"},
    )
    a, b, c = the_set.ids
    assert the_set.consensus == [[b], [a], [c]]
    return the_set


def test_excluding_a_trainer_by_choice_recomputes_the_consensus(
    project, people, split_vote, tmp_path
):
    a, b, c = split_vote.ids
    out = export(project, "preferences", tmp_path, **one_split(exclude_annotators=["r2"]))
    rows = out.rows["train"]
    # r1 (a > b) and r3 (b > a) now tie a and b: the consensus is [a, b] > c, ties skipped.
    assert sorted((r["meta"]["chosen_id"], r["meta"]["rejected_id"]) for r in rows) == sorted(
        [(a, c), (b, c)]
    )
    assert {r["meta"]["rankings"] for r in rows} == {2}
    assert out.left_out["rankings_of_excluded_annotators"] == 1
    assert b"untruthful" not in out.raw["train"]  # r2's flag left with r2
    rankings = export(project, "rankings", tmp_path / "r", **one_split(exclude_annotators=["r2"]))
    row = rankings.rows["train"][0]
    assert row["consensus"] == [[0, 1], [2]]
    # The figures are those of the rankings the row holds: r1 and r3 agree on 2 pairs of 3.
    assert row["agreement"] == pytest.approx(2 / 3) and row["kendall_tau"] == pytest.approx(1 / 3)
    assert pseudonym_of(project, people["r2"]) not in str(row)


def test_a_ranking_a_lead_excluded_never_leaves(project, people, split_vote, tmp_path):
    a, b, c = split_vote.ids
    # The admin's "exclude from exports" action: a plain update, the stored consensus untouched.
    Ranking.objects.filter(ranking_set=split_vote, annotator=people["r2"]).update(is_excluded=True)
    r2 = pseudonym_of(project, people["r2"]).encode()
    choices = {"include_rewrites": True, "pairs_from": "annotator"}
    for kind, extra in (("preferences", choices), ("preferences", {}), ("rankings", {})):
        out = export(project, kind, tmp_path / kind / str(len(extra)), **one_split(**extra))
        data = out.raw["train"]
        assert r2 not in data and b"R2 REWRITE" not in data and b"untruthful" not in data
    consensus = export(project, "preferences", tmp_path / "consensus", **one_split()).rows["train"]
    assert sorted((r["meta"]["chosen_id"], r["meta"]["rejected_id"]) for r in consensus) == sorted(
        [(a, c), (b, c)]
    )
    assert {r["meta"]["rankings"] for r in consensus} == {2}
    # Agreement of what is exported: r1 and r3 agree on 2 of 3 pairs.
    assert [r["meta"]["agreement"] for r in consensus] == [pytest.approx(2 / 3)] * 2
    assert export(project, "rankings", tmp_path / "r", **one_split()).left_out == {
        "rankings_excluded_by_leads": 1
    }


def test_exclude_flags_drops_flagged_replies(project, people, tmp_path):
    context = start(project, "Q")
    replies = candidates(context, "abcd")
    ranked_set(
        project, context, replies, [(people[r], [[0], [1], [2], [3]]) for r in ("r1", "r2")],
        flags={0: {1: ["pii"]}},
    )  # fmt: skip
    Label.objects.create(message=replies[3], name="harmful", value=1, annotator=people["r3"])

    every = export(project, "preferences", tmp_path / "every", **one_split()).rows["train"]
    assert len(every) == 6
    flagged = next(r for r in every if r["rejected"][0]["content"] == "reply b")
    assert flagged["meta"]["rejected_flags"] == ["pii"]

    out = export(project, "preferences", tmp_path / "out", **one_split(exclude_flags=["pii"]))
    assert sorted(pairs_of(out.rows["train"])) == [
        ("reply a", "reply c"), ("reply a", "reply d"), ("reply c", "reply d"),
    ]  # fmt: skip
    both = export(
        project, "preferences", tmp_path / "both", **one_split(exclude_flags=["pii", "harmful"])
    )
    assert pairs_of(both.rows["train"]) == [("reply a", "reply c")]
    assert both.left_out["candidates_flagged"] == 2


def test_model_versions_keeps_only_those_models_replies(project, people, tmp_path):
    m1, m2 = ModelVersionFactory(name="m1"), ModelVersionFactory(name="m2")
    context = start(project, "Q")
    replies = [
        say(context, "one by m1", model=m1),
        say(context, "by m2", model=m2),
        say(context, "two by m1", model=m1),
        say(context, "by a person", user=people["w1"]),
    ]
    ranked_set(project, context, replies, [(people["r1"], [[0], [1], [2], [3]])])

    only_m1 = export(project, "preferences", tmp_path / "m1", **one_split(model_versions=["m1"]))
    assert pairs_of(only_m1.rows["train"]) == [("one by m1", "two by m1")]
    assert only_m1.rows["train"][0]["meta"]["chosen_model"] == "m1"
    assert only_m1.left_out["candidates_of_other_models"] == 2

    with_people = export(
        project, "preferences", tmp_path / "h", **one_split(model_versions=["m1", "human"])
    )
    assert sorted(pairs_of(with_people.rows["train"])) == [
        ("one by m1", "by a person"), ("one by m1", "two by m1"), ("two by m1", "by a person"),
    ]  # fmt: skip
    rankings = export(project, "rankings", tmp_path / "r", **one_split(model_versions=["m2"]))
    assert rankings.rows["train"] == []  # one reply left: no set
    assert rankings.left_out["sets_with_fewer_than_two_candidates"] == 1


def test_languages_filter_on_the_context_and_the_prompt(project, people, tmp_path):
    for lang in ("en", "de"):
        context = conversation_in(project, f"prompt in {lang}", lang)
        replies = [say(context, f"{lang} {x}", user=people["w1"]) for x in "ab"]
        ranked_set(project, context, replies, [(people["r1"], [[0], [1]])])
    for kind in ("sft", "preferences", "rankings", "prompts"):
        choices = one_split(languages=["de"])
        rows = export(project, kind, tmp_path / kind, **choices).rows["train"]
        key = "messages" if kind == "sft" else "prompt"
        assert rows and {r[key][0]["content"] for r in rows} == {"prompt in de"}, kind


def conversation_in(project, text, lang):
    from annotations.services import conversation_start

    return conversation_start(project=project, text=text, lang=lang)[1]


def test_min_agreement(project, people, tmp_path):
    agreed, split = start(project, "agreed"), start(project, "split")
    ranked_set(
        project, agreed, candidates(agreed, "ab"), [(people[r], [[0], [1]]) for r in ("r1", "r2")]
    )
    low = ranked_set(
        project, split, candidates(split, "ab"),
        [(people["r1"], [[0], [1]]), (people["r2"], [[1], [0]]), (people["r3"], [[0], [1]])],
    )  # fmt: skip
    assert low.agreement == pytest.approx(1 / 3)
    prompts = {
        value: {r["prompt"][0]["content"] for r in export(
            project, "preferences", tmp_path / str(value), **one_split(min_agreement=value)
        ).rows["train"]}
        for value in (0, 1 / 3, 0.34, 1)
    }  # fmt: skip
    assert prompts == {
        0: {"agreed", "split"}, 1 / 3: {"agreed", "split"}, 0.34: {"agreed"}, 1: {"agreed"}
    }  # fmt: skip


def test_incomplete_and_cancelled_sets_only_when_asked(project, people, tmp_path):
    for state in ("complete", "collecting", "cancelled", "sampling"):
        context = start(project, state)
        ranked_set(
            project, context, candidates(context, "ab"), [(people["r1"], [[0], [1]])], state=state
        )

    def states(**choices):
        rows = export(project, "preferences", tmp_path / str(choices), **one_split(**choices))
        return sorted(r["meta"]["state"] for r in rows.rows["train"])

    assert states() == ["complete"]
    assert states(include_incomplete=True) == ["collecting", "complete"]
    assert states(include_cancelled=True) == ["cancelled", "complete"]
    assert states(include_incomplete=True, include_cancelled=True) == [
        "cancelled", "collecting", "complete"
    ]  # fmt: skip


def test_include_rewrites_adds_the_rewrite_over_each_candidate(project, people, tmp_path):
    context = start(project, "Q")
    replies = candidates(context, "abc")
    the_set = ranked_set(
        project, context, replies,
        [(people["r1"], [[0], [1], [2]]), (people["r2"], [[0], [1], [2]])],
        rewrites={1: "A better reply"},
    )  # fmt: skip
    plain = export(project, "preferences", tmp_path / "plain", **one_split()).rows["train"]
    assert len(plain) == 3 and "A better reply" not in str(plain)

    rows = export(project, "preferences", tmp_path / "rw", **one_split(include_rewrites=True))
    rewrites = [r for r in rows.rows["train"] if r["meta"]["pair_source"] == "rewrite"]
    assert pairs_of(rewrites) == [("A better reply", f"reply {x}") for x in "abc"]
    rewrite = Ranking.objects.get(ranking_set=the_set, annotator=people["r2"]).rewrite
    for row in rewrites:
        meta = row["meta"]
        assert meta["margin"] == 1.0 and meta["chosen_id"] == rewrite.pk
        assert meta["annotator"] == meta["chosen_author"] == pseudonym_of(project, people["r2"])
        assert meta["group_id"] == the_set.pk and meta["chosen_model"] is None
    assert len(rows.rows["train"]) == 6

    # The rewrite is also a demonstration, until a lead excludes the ranking it came with.
    sft = export(project, "sft", tmp_path / "sft", **one_split()).rows["train"]
    assert "A better reply" in [row["messages"][-1]["content"] for row in sft]
    Ranking.objects.filter(pk=rewrite.rewrite_of.get().pk).update(is_excluded=True)
    sft = export(project, "sft", tmp_path / "sft-excluded", **one_split()).rows["train"]
    assert "A better reply" not in [row["messages"][-1]["content"] for row in sft]
    preferences = export(
        project, "preferences", tmp_path / "rw-excluded", **one_split(include_rewrites=True)
    ).rows["train"]
    assert "A better reply" not in str(preferences)


# --- rankings -----------------------------------------------------------------------------------


def test_rankings_hold_raw_orders_by_index_under_pseudonyms(project, tmp_path):
    rankers = [
        MembershipFactory(
            project=project,
            user=UserFactory(id=987650 + i, username=f"zelda_secret_{i}", email=f"z{i}@mail.test"),
        ).user
        for i in range(3)
    ]
    writer = UserFactory(id=987659, username="writer_secret", email="writer@mail.test")
    context = start(project, "Q", user=writer)
    replies = candidates(context, "abc", user=writer)
    the_set = ranked_set(
        project, context, replies,
        [(rankers[0], [[0], [1], [2]]), (rankers[1], [[0], [2], [1]]),
         (rankers[2], [[1], [0], [2]])],
        flags={2: {2: ["harmful"]}},
    )  # fmt: skip
    imported = start(project, "Imported Q")
    ranked_set(project, imported, candidates(imported, "xy"), [(None, [[1], [0]])])

    out = export(project, "rankings", tmp_path, **one_split())
    first, second = out.rows["train"]
    assert list(first) == [
        "prompt", "completions", "rankings", "consensus", "agreement", "kendall_tau", "meta"
    ]  # fmt: skip
    assert first["completions"] == [[{"role": "assistant", "content": f"reply {x}"}] for x in "abc"]
    assert [r["order"] for r in first["rankings"]] == [
        [[0], [1], [2]],
        [[0], [2], [1]],
        [[1], [0], [2]],
    ]
    assert [r["annotator"] for r in first["rankings"]] == [
        pseudonym_of(project, u) for u in rankers
    ]
    assert [r["imported"] for r in first["rankings"]] == [False] * 3
    assert first["rankings"][2]["flags"] == [[], [], ["harmful"]]
    assert first["consensus"] == [[0], [1], [2]]
    # As worked in tests/annotations/test_agreement.py: agreement 5/9, Kendall's tau 1/9.
    assert first["agreement"] == pytest.approx(5 / 9) == the_set.agreement
    assert first["kendall_tau"] == pytest.approx(1 / 9) == the_set.kendall_tau
    assert first["meta"]["completion_ids"] == the_set.ids
    assert (
        first["meta"]["completion_authors"]
        == [{"model": None, "annotator": pseudonym_of(project, writer)}] * 3
    )

    assert second["rankings"] == [
        {"annotator": None, "imported": True, "order": [[1], [0]], "all_bad": False,
         "flags": [[], []], "rewrite": None, "time_spent_ms": 1000}
    ]  # fmt: skip
    assert second["consensus"] == [[1], [0]]
    assert second["agreement"] is None and second["kendall_tau"] is None

    # Nowhere in any kind's files, nor in a manifest whose choices named a trainer by username.
    folders = [tmp_path]
    for kind in ("sft", "preferences", "prompts", "rankings"):
        choices = one_split(exclude_annotators=[rankers[0].username])
        if kind == "preferences":
            choices.update(pairs_from="annotator")
        folders.append(export(project, kind, tmp_path / kind, **choices).folder)
    data = b"".join(path.read_bytes() for folder in folders for path in folder.iterdir()
                    if path.is_file())  # fmt: skip
    assert pseudonym_of(project, rankers[1]).encode() in data
    for user in [*rankers, writer]:
        assert user.username.encode() not in data
        assert user.email.encode() not in data
        assert str(user.pk).encode() not in data


def test_preferences_of_imported_rankings_say_so(project, tmp_path):
    context = start(project, "Imported Q")
    ranked_set(project, context, candidates(context, "xy"), [(None, [[1], [0]])])
    for pairs_from in ("consensus", "annotator"):
        rows = export(
            project, "preferences", tmp_path / pairs_from, **one_split(pairs_from=pairs_from)
        ).rows["train"]
        assert pairs_of(rows) == [("reply y", "reply x")]
        assert rows[0]["meta"]["imported"] is True and rows[0]["meta"]["annotator"] is None


# --- prompts ------------------------------------------------------------------------------------


def test_prompts_are_deduplicated_and_keep_system_prompts(project, people, tmp_path):
    first = start(project, "Hello   World", source="prompt")
    start(project, "hello world", source="prompt")  # the same prompt again
    system = start(project, "Be brief.", role="system")
    under_system = say(system, "hello world")  # not a duplicate: it has a system prompt
    start(project, "Second", meta={"dataset": "pool", "tags": ["t1"]}, source="import")
    say(say(first, "answer", user=people["w1"]), "a later user turn")  # not a prompt

    out = export(project, "prompts", tmp_path, **one_split())
    rows = out.rows["train"]
    assert [r["prompt"] for r in rows] == [
        [{"role": "user", "content": "Hello   World"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}],
        [{"role": "user", "content": "Second"}],
    ]
    assert rows[0]["meta"]["message_id"] == first.pk
    assert rows[1]["meta"]["message_id"] == under_system.pk
    assert rows[2]["meta"]["source"] == "pool" and rows[2]["meta"]["tags"] == ["t1"]
    assert out.left_out["duplicate_prompts"] == 1
    assert out.manifest["rows_per_source"] == {"demonstration": 1, "pool": 1, "prompt": 1}


def test_reported_prompts_leave_until_a_report_is_dismissed(
    project, trainer, lead, people, tmp_path
):
    prompts = {
        name: start(project, name, source="prompt")
        for name in ("fine", "open", "upheld", "dismissed")
    }
    for name in ("open", "upheld", "dismissed"):
        report = prompt_report_create(
            project=project, message=prompts[name], reporter=trainer, reason="harmful"
        )
        if name != "open":
            prompt_report_decide(report=report, user=lead, uphold=name == "upheld")
    say(prompts["fine"], "fine answer", user=people["w1"])
    # A reported prompt takes its conversation's other rows with it.
    context = prompts["open"]
    ranked_set(project, context, candidates(context, "ab", user=people["w1"]),
                [(people["r1"], [[0], [1]])])  # fmt: skip

    def firsts(kind):
        out = export(project, kind, tmp_path / kind, **one_split())
        key = "messages" if kind == "sft" else "prompt"
        return sorted(r[key][0]["content"] for r in out.rows["train"])

    assert firsts("prompts") == ["dismissed", "fine"]
    assert firsts("sft") == ["fine"]
    assert firsts("preferences") == []
    assert firsts("rankings") == []


# --- splits, determinism, empty exports ---------------------------------------------------------


@pytest.fixture
def many(project, people):
    """40 conversations, each with a two-reply ranking set and a human follow-up."""
    for i in range(40):
        context = start(project, f"prompt {i}")
        replies = candidates(context, "ab", user=people["w1"])
        say(say(replies[0], f"follow-up {i}", user=people["w2"]), f"end {i}", user=people["w1"])
        ranked_set(project, context, replies, [(people["r1"], [[0], [1]])])


@pytest.mark.parametrize("kind", ["sft", "preferences", "rankings", "prompts"])
def test_no_conversation_is_on_two_sides(project, many, tmp_path, kind):
    out = export(project, kind, tmp_path, validation=0.3, test=0.2, seed=7)
    sides: dict[str, set[int]] = {}
    for split, rows in out.rows.items():
        assert rows, f"{split} is empty: the test would prove nothing"
        sides[split] = {r["meta"]["conversation_id"] for r in rows}
    assert sides["train"].isdisjoint(sides["validation"])
    assert sides["train"].isdisjoint(sides["test"])
    assert sides["validation"].isdisjoint(sides["test"])
    prompt_key = "messages" if kind == "sft" else "prompt"
    firsts = {
        split: {r[prompt_key][0]["content"] for r in rows} for split, rows in out.rows.items()
    }
    assert firsts["train"].isdisjoint(firsts["validation"] | firsts["test"])


def test_splits_are_deterministic_for_a_seed_and_differ_for_another(project, many, tmp_path):
    def assignment(seed, name):
        out = export(project, "sft", tmp_path / name, validation=0.3, seed=seed)
        return {r["meta"]["message_id"]: s for s, rows in out.rows.items() for r in rows}

    first, again, other = assignment(1, "a"), assignment(1, "b"), assignment(2, "c")
    assert first == again
    assert first != other
    assert set(first) == set(other)


@pytest.mark.parametrize("gzip", [False, True])
@pytest.mark.parametrize("kind", ["sft", "preferences", "rankings", "prompts"])
def test_the_same_choices_give_byte_identical_files(project, many, tmp_path, kind, gzip):
    first = export(project, kind, tmp_path / "1", validation=0.2, test=0.1, seed=3, gzip=gzip)
    second = export(project, kind, tmp_path / "2", validation=0.2, test=0.1, seed=3, gzip=gzip)
    assert first.raw == second.raw
    for name, split in first.manifest["splits"].items():
        assert split["file"].endswith(".jsonl.gz" if gzip else ".jsonl")
        assert split == second.manifest["splits"][name]
    assert (tmp_path / "1" / "README.md").read_bytes() == (
        tmp_path / "2" / "README.md"
    ).read_bytes()
    assert first.manifest["rows"] > 0


@pytest.mark.parametrize("gzip", [False, True])
@pytest.mark.parametrize("kind", ["sft", "preferences", "rankings", "prompts"])
def test_an_empty_selection_gives_empty_files(project, tmp_path, kind, gzip):
    out = export(project, kind, tmp_path, gzip=gzip, test=0.1)
    assert out.manifest["rows"] == 0
    assert list(out.manifest["splits"]) == ["train", "validation", "test"]
    for split in out.manifest["splits"].values():
        assert split["rows"] == 0 and (tmp_path / split["file"]).exists()
    assert out.all_rows == []
    # datasets cannot load an empty split: the card's header names only the train file.
    header = (tmp_path / "README.md").read_text().split("---")[1]
    assert "split: train" in header and "split: validation" not in header


def test_the_manifest_says_what_was_exported(project, many, tmp_path):
    out = export(project, "preferences", tmp_path, validation=0.25, seed=5)
    manifest = out.manifest
    assert manifest["kind"] == "preferences" and manifest["project"] == project.slug
    assert manifest["split_by"] == "conversation" and manifest["split_seed"] == 5
    assert manifest["choices"]["validation"] == 0.25 and manifest["choices"]["seed"] == 5
    for name, split in manifest["splits"].items():
        import hashlib

        assert split["sha256"] == hashlib.sha256(out.raw[name]).hexdigest()
        assert split["bytes"] == len(out.raw[name])
    assert manifest["rows"] == 40


# --- length bias --------------------------------------------------------------------------------


def test_length_bias_is_reported_and_can_be_balanced(project, people, tmp_path):
    # 8 sets whose best reply is the longest (3 pairs each, all "chosen longer"), 2 whose best is
    # the shortest (3 pairs each, all "chosen shorter"), and one with equal lengths.
    for i in range(8):
        context = start(project, f"long wins {i}")
        replies = [say(context, "x" * n) for n in (30, 20, 10)]
        ranked_set(project, context, replies, [(people["r1"], [[0], [1], [2]])])
    for i in range(2):
        context = start(project, f"short wins {i}")
        replies = [say(context, "y" * n) for n in (10, 20, 30)]
        ranked_set(project, context, replies, [(people["r1"], [[0], [1], [2]])])
    context = start(project, "same length")
    ranked_set(
        project, context, [say(context, "p"), say(context, "q")], [(people["r1"], [[0], [1]])]
    )

    plain = export(project, "preferences", tmp_path / "plain", **one_split())
    bias = plain.manifest["length_bias"]
    assert (bias["chosen_longer"], bias["chosen_shorter"], bias["same_length"]) == (24, 6, 1)
    assert bias["chosen_longer_share"] == pytest.approx(0.8)
    assert bias["balanced"] is False and bias["dropped_for_balance"] == 0
    assert plain.manifest["rows"] == 31

    balanced = export(project, "preferences", tmp_path / "bal", **one_split(length_balanced=True))
    bias = balanced.manifest["length_bias"]
    assert bias["balanced"] is True
    assert abs(bias["chosen_longer_share"] - 0.5) <= 0.01
    assert bias["dropped_for_balance"] == 18
    assert balanced.left_out["pairs_dropped_for_length_balance"] == 18
    assert balanced.manifest["rows"] == 31 - 18
    rows = balanced.rows["train"]
    longer = sum(len(r["chosen"][0]["content"]) > len(r["rejected"][0]["content"]) for r in rows)
    shorter = sum(len(r["chosen"][0]["content"]) < len(r["rejected"][0]["content"]) for r in rows)
    assert (longer, shorter) == (6, 6)
    # The kept majority pairs are spread over the sets, not the first few.
    kept_from = {
        r["prompt"][0]["content"] for r in rows if r["prompt"][0]["content"].startswith("long")
    }
    assert len(kept_from) >= 4
    again = export(project, "preferences", tmp_path / "again", **one_split(length_balanced=True))
    assert again.raw == balanced.raw


def test_length_balance_with_one_side_only_drops_it_all(project, people, tmp_path):
    context = start(project, "Q")
    ranked_set(
        project, context, [say(context, "long!"), say(context, "s")], [(people["r1"], [[0], [1]])]
    )
    out = export(project, "preferences", tmp_path, **one_split(length_balanced=True))
    assert out.manifest["rows"] == 0
    assert out.manifest["length_bias"]["dropped_for_balance"] == 1


# --- outside a transaction: the builders read ahead in a thread of their own --------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["preferences", "rankings"])
def test_reading_ahead_in_a_thread_gives_the_same_bytes(project, people, tmp_path, kind):
    from django.db import transaction

    for i in range(6):
        context = start(project, f"prompt {i}")
        ranked_set(
            project, context, candidates(context, "abc"),
            [(people["r1"], [[0], [1], [2]]), (people["r2"], [[2], [1], [0]]),
             (people["r3"], [[1], [0], [2]])],
            flags={0: {1: ["pii"]}}, rewrites={2: f"rewrite {i}"},
        )  # fmt: skip
    Ranking.objects.filter(annotator=people["r3"], ranking_set__context__text="prompt 0").update(
        is_excluded=True
    )
    choices = {"exclude_annotators": ["r2"], "validation": 0.3, "seed": 4}
    if kind == "preferences":
        choices.update(include_rewrites=True, pairs_from="annotator", length_balanced=False)
    threaded = export(project, kind, tmp_path / "threaded", **choices)
    with transaction.atomic():
        in_line = export(project, kind, tmp_path / "in-line", **choices)
    assert threaded.raw == in_line.raw
    assert threaded.left_out == in_line.left_out
    assert threaded.left_out["rankings_excluded_by_leads"] == 1
    assert threaded.manifest["rows"] > 0


# --- every row has the columns the dataset card declares ---------------------------------------


def conforms(value, spec, where: str = "row") -> None:
    """Assert `value` has exactly the shape of a FEATURES spec (None fits any dtype)."""
    if isinstance(spec, str):
        types = {"string": str, "int64": int, "float64": float, "bool": bool}[spec]
        assert value is None or (type(value) is types), f"{where}: {value!r} is not {spec}"
    elif isinstance(spec, dict):
        assert isinstance(value, dict) and set(value) == set(spec), (
            f"{where}: keys {sorted(value)} are not {sorted(spec)}"
        )
        for key, item in spec.items():
            conforms(value[key], item, f"{where}.{key}")
    else:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            conforms(item, spec[0], f"{where}[{i}]")


def test_every_row_has_the_declared_features(project, tmp_path):
    from exports.writer import FEATURES

    varied_data(project)
    for kind, choice_sets in VARIED_RUNS.items():
        for i, choices in enumerate(choice_sets):
            out = export(project, kind, tmp_path / f"{kind}{i}", **one_split(**choices))
            assert out.all_rows, kind
            for n, row in enumerate(out.all_rows):
                conforms(row, FEATURES[kind], f"{kind}[{n}]")
