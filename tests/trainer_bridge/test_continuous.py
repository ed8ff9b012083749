"""Continuous batching on the tiny model: rows join and leave between steps, drafts first."""

import pytest

from trainer_bridge.backends import LoadedGenerator, Row
from trainer_bridge.decoding import EngineSettings, GenerationOutOfMemory
from trainer_bridge.loading import load_policy
from trainer_bridge.sampling_params import SamplingParams

QUESTIONS = [
    "How do I boil an egg?",
    "Write a letter to Omar about the garden.",
    "What should I pack for a picnic by the river tomorrow?",
    "Dear Priya, the kettle is broken",
    "Hi",
]
LONG_GREEDY = SamplingParams(temperature=0, max_new_tokens=40)


def _generator(tiny_model_paths, **settings) -> LoadedGenerator:
    tokenizer, model = load_policy(str(tiny_model_paths.policy))
    tokenizer.padding_side = "left"
    return LoadedGenerator(tokenizer, model, device="cpu", settings=EngineSettings(**settings))


@pytest.fixture(scope="module")
def generator(tiny_model_paths):
    return _generator(tiny_model_paths)


@pytest.fixture(scope="module")
def prompts(generator):
    return generator.encode_chats([[{"role": "user", "content": q}] for q in QUESTIONS])


def _run(session, *, until=None, limit=500):
    """Step until nothing is left (or `until(outcome)` is true); finished samples by tag."""
    samples = {}
    for _ in range(limit):
        if not session.busy():
            break
        outcome = session.step()
        samples.update({f.tag: f.sample for f in outcome.finished})
        if until is not None and until(outcome):
            break
    return samples


def _decode_widths(forward):
    """Rows of each decoding forward (one new token per row)."""
    calls = [c.kwargs["input_ids"] for c in forward.call_args_list]
    return [ids.shape[0] for ids in calls if ids.shape[1] == 1]


@pytest.mark.parametrize("static_steps", [False, True])
def test_a_row_joining_a_running_batch_gives_what_it_gives_alone(
    tiny_model_paths, prompts, static_steps
):
    # static_steps: bucketed batches and the graph-safe sampler, as on CUDA (minus the graphs).
    generator = _generator(tiny_model_paths, static_steps=static_steps)
    seeded = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, max_new_tokens=24, seed=11)
    late = [("late", i) for i in range(3)]
    alone = generator.generate([Row(prompts[0], seeded, i) for i in range(3)])

    with generator.session(length=80) as session:
        session.add([(("early", i), Row(prompts[i], LONG_GREEDY)) for i in (1, 2, 3)])
        session.add([(("early", 4), Row(prompts[4], SamplingParams(repetition_penalty=2.0)))])
        samples = _run(session, limit=3)
        running = session.active
        session.add((tag, Row(prompts[0], seeded, i)) for i, tag in enumerate(late))
        outcome = session.step()
        samples.update({f.tag: f.sample for f in outcome.finished})
        samples.update(_run(session))

    assert running >= 2 and outcome.joined == 3  # they joined rows that were decoding
    assert [samples[tag] for tag in late] == alone
    assert len({s.text for s in alone}) > 1
    # The rows already running were not disturbed by the newcomers.
    greedy = generator.generate([Row(prompts[i], LONG_GREEDY) for i in (1, 2, 3)])
    assert [samples[("early", i)] for i in (1, 2, 3)] == greedy


def test_finished_rows_free_their_slot_for_waiting_rows(tiny_model_paths, prompts, mocker):
    generator = _generator(tiny_model_paths, max_rows=2)
    forward = mocker.spy(generator.model, "forward")
    short = SamplingParams(temperature=0, max_new_tokens=3)
    rows = [
        ("short", Row(prompts[0], short)),
        ("long", Row(prompts[1], LONG_GREEDY)),
        ("next", Row(prompts[2], short)),
        ("last", Row(prompts[3], short)),
    ]
    finished = []
    with generator.session(length=60) as session:
        assert session.slots == 2
        session.add(rows)
        while session.busy():
            finished.extend((f.tag, f.sample) for f in session.step().finished)
    assert max(_decode_widths(forward)) == 2  # never more rows than slots
    # The waiting rows took the short row's slot while the long row was still decoding.
    assert [tag for tag, _ in finished] == ["short", "next", "last", "long"]
    assert dict(finished)["long"].completion_tokens > 9


def test_drafts_join_before_candidates_that_waited_longer(tiny_model_paths, prompts):
    generator = _generator(tiny_model_paths, max_rows=2)
    short = SamplingParams(temperature=0, max_new_tokens=3)
    with generator.session(length=60) as session:
        # Two slots: one frees after three tokens, the other much later.
        session.add(
            [("running0", Row(prompts[0], short)), ("running1", Row(prompts[1], LONG_GREEDY))]
        )
        session.step()
        session.add([(f"waiting{i}", Row(prompts[2], LONG_GREEDY)) for i in range(3)])
        session.add([("draft", Row(prompts[3], LONG_GREEDY, draft=True))])
        joined_at = {}
        for _ in range(200):
            if not session.busy():
                break
            session.step()
            for entry in session.engine.occupant:
                if entry is not None:
                    joined_at.setdefault(entry.tag, session.steps)
    assert joined_at["draft"] < min(joined_at[f"waiting{i}"] for i in range(3))


def test_drafts_step_alone_between_steps_of_the_whole_batch(tiny_model_paths, prompts, mocker):
    generator = _generator(tiny_model_paths, draft_steps_per_bulk_step=3)
    forward = mocker.spy(generator.model, "forward")
    with generator.session(length=60) as session:
        session.add([(f"candidate{i}", Row(prompts[i], LONG_GREEDY)) for i in range(4)])
        session.add([("draft", Row(prompts[4], LONG_GREEDY, draft=True))])
        samples = _run(session, until=lambda outcome: bool(outcome.finished))
        candidates_left = session.active
    draft_tokens = samples["draft"].completion_tokens
    widths = _decode_widths(forward)
    # All five rows step once as they join; then, while both kinds run, three steps of the
    # draft alone for each step of all five.
    assert widths[:9] == [5, 1, 1, 1, 5, 1, 1, 1, 5]
    assert candidates_left == 4 and draft_tokens > 8
    # The draft's tokens are all in before the candidates got a third of theirs.
    assert widths.count(5) <= draft_tokens // 3 + 1


@pytest.mark.parametrize("static_steps", [False, True])
def test_candidates_wait_while_the_drafts_step(tiny_model_paths, prompts, static_steps):
    # Three drafts: a bucketed step pads them to four rows, the fourth a running candidate.
    generator = _generator(tiny_model_paths, draft_steps_per_bulk_step=2, static_steps=static_steps)
    with generator.session(length=60) as session:
        session.add([(f"draft{i}", Row(prompts[i], LONG_GREEDY, draft=True)) for i in range(3)])
        session.add([(f"candidate{i}", Row(prompts[i], LONG_GREEDY)) for i in range(3)])
        session.step()  # all join, then a step of every row
        assert [e.row.draft for e in session.engine.occupant[:6]] == [True] * 3 + [False] * 3
        steps = session.engine.state.step[:6].tolist()
        session.step()  # the drafts alone
        after = session.engine.state.step[:6].tolist()
    assert after[:3] == [n + 1 for n in steps[:3]]
    assert after[3:] == steps[3:]  # the candidates, padding included, did not move


def test_candidates_join_only_before_steps_of_the_whole_batch(tiny_model_paths, prompts, mocker):
    generator = _generator(tiny_model_paths, draft_steps_per_bulk_step=3)
    forward = mocker.spy(generator.model, "forward")
    with generator.session(length=60) as session:
        session.add([("candidate", Row(prompts[0], LONG_GREEDY))])
        session.add([("draft", Row(prompts[4], LONG_GREEDY, draft=True))])
        session.step()  # both join; the whole batch steps
        session.step()  # the draft alone
        session.add([("late", Row(prompts[1], LONG_GREEDY))])
        for _ in range(4):
            session.step()
    calls = [tuple(c.kwargs["input_ids"].shape) for c in forward.call_args_list]
    late_prefill = calls.index((1, len(prompts[1])))
    # The late candidate waited out the draft's streak: two more draft-only steps, then it was
    # prefilled just before a step of all three rows.
    assert calls[late_prefill - 2 : late_prefill + 2] == [
        (1, 1),
        (1, 1),
        calls[late_prefill],
        (3, 1),
    ]


def test_candidates_join_a_slice_at_a_time_while_a_draft_runs(tiny_model_paths, prompts):
    # A slice of 8 prompt tokens, or as many as rows running, and always at least one
    # candidate; with no draft all of them join at once.
    generator = _generator(tiny_model_paths, draft_prefill_tokens=8, draft_steps_per_bulk_step=1)
    candidates = [(f"candidate{i}", Row(prompts[i], LONG_GREEDY)) for i in range(4)]
    with generator.session(length=60) as session:
        session.add(candidates)
        assert session.step().joined == 4
    joined, samples = [], {}
    with generator.session(length=60) as session:
        session.add(candidates)
        session.add([("draft", Row(prompts[4], LONG_GREEDY, draft=True))])
        for _ in range(8):
            outcome = session.step()
            joined.append(outcome.joined)
            samples.update({f.tag: f.sample for f in outcome.finished})
        samples.update(_run(session))
    # The draft and one candidate, then one candidate before each step of the whole batch
    # (every other step); none is lost.
    assert joined == [2, 0, 1, 0, 1, 0, 1, 0]
    assert sorted(samples) == [f"candidate{i}" for i in range(4)] + ["draft"]


def test_a_draft_joining_a_running_batch_takes_its_first_step_alone(
    tiny_model_paths, prompts, mocker
):
    generator = _generator(tiny_model_paths, draft_steps_per_bulk_step=3)
    forward = mocker.spy(generator.model, "forward")
    with generator.session(length=60) as session:
        session.add([(f"candidate{i}", Row(prompts[i], LONG_GREEDY)) for i in range(3)])
        session.step()  # the candidates join and step
        session.add([("late", Row(prompts[3], LONG_GREEDY))])
        session.add([("draft", Row(prompts[4], LONG_GREEDY, draft=True))])
        forward.reset_mock()
        session.step()
        first = [tuple(c.kwargs["input_ids"].shape) for c in forward.call_args_list]
        assert session.engine.running == 4 and len(session.pending) == 1
        streak = [session.step() for _ in range(3)]
        assert len(session.pending) == 1  # the late candidate is still waiting
        session.step()
        calls = [tuple(c.kwargs["input_ids"].shape) for c in forward.call_args_list]
    # The draft's prefill and a step of the draft alone: no candidate joined, no step of the
    # whole batch held it up; then its streak, and only then the candidate and the batch.
    assert first == [(1, len(prompts[4])), (1, 1)]
    assert calls[2:] == [(1, 1), (1, 1), (1, 1), (1, len(prompts[3])), (5, 1)]
    assert all(not outcome.failed for outcome in streak)


def test_candidates_joining_while_a_draft_runs_take_a_step_s_worth_of_prefill(
    tiny_model_paths, prompts
):
    generator = _generator(tiny_model_paths, draft_steps_per_bulk_step=1)
    late = [(f"late{i}", Row(prompts[1], LONG_GREEDY)) for i in range(6)]
    with generator.session(length=60) as session:
        session.add([("candidate", Row(prompts[0], LONG_GREEDY))])
        session.add([("draft", Row(prompts[4], LONG_GREEDY, draft=True))])
        session.step()
        sharing = session.sharing
        assert sharing.prefill_rate > 0 and sharing.step_seconds["decode"] > 0
        # Measured as 1,000 prompt tokens a second and 25 ms to decode a step of the batch
        # (what came before weighs nothing next to it): a slice of 25 tokens, one of the late
        # candidates' prompts of 13 or more tokens, where an eighth of the prefill budget
        # (2,048 tokens) would take all six.
        for _ in range(100):
            sharing.prefilled(tokens=1000, seconds=1.0)
            sharing.stepped("full", seconds=0.03, decoding=0.025)
        session.add(late)
        joined = [session.step().joined for _ in range(2)]
    assert 13 <= len(prompts[1]) <= 25
    assert joined == [0, 1]


def test_out_of_memory_while_joining_waits_for_room_and_loses_nothing(
    tiny_model_paths, prompts, mocker
):
    generator = _generator(tiny_model_paths)
    forward = mocker.spy(generator.model, "forward")
    short = SamplingParams(temperature=0.7, max_new_tokens=6, seed=5)
    with generator.session(length=60, faults={"oom_above_rows": 2}) as session:
        session.add((i, Row(prompts[i], short)) for i in range(5))
        samples = _run(session)
        splits = session.splits
    assert sorted(samples) == [0, 1, 2, 3, 4]
    assert splits >= 1 and max(_decode_widths(forward)) <= 2
    assert [samples[i] for i in range(5)] == generator.generate(
        [Row(prompts[i], short) for i in range(5)]
    )


def test_one_bad_tag_fails_alone(tiny_model_paths, prompts):
    generator = _generator(tiny_model_paths)
    bad = SamplingParams(temperature=0.7, top_k=50, max_new_tokens=5)
    good = SamplingParams(temperature=0.7, max_new_tokens=5, seed=1)
    failed = []
    with generator.session(length=60, faults={"fail_when_top_k_above": 40}) as session:
        session.add([("good", Row(prompts[0], good, i)) for i in range(3)])
        session.add([("bad", Row(prompts[1], bad, i)) for i in range(2)])
        session.add([("long", Row(prompts[2], SamplingParams(max_new_tokens=200)))])
        samples = {}
        while session.busy():
            outcome = session.step()
            failed.extend(outcome.failed)
            samples.update({f.tag: f.sample for f in outcome.finished})
    assert {f.tag for f in failed} == {"bad", "long"}
    reasons = {f.tag: f for f in failed}
    assert isinstance(reasons["bad"].error, OverflowError) and not reasons["bad"].out_of_memory
    assert isinstance(reasons["long"].error, GenerationOutOfMemory)
    assert "needs" in str(reasons["long"].error) and reasons["long"].out_of_memory
    assert set(samples) == {"good"}


def test_a_row_longer_than_the_cache_holds_fails_alone(tiny_model_paths, prompts):
    # 256 tokens of cache: one row of 256, two of 128, four of 64; none of 512.
    generator = _generator(tiny_model_paths, token_budget=256)
    short = SamplingParams(temperature=0, max_new_tokens=20)
    failed = []
    samples = {}
    with generator.session(length=len(prompts[0]) + 400) as session:
        assert (session.length, session.slots) == (256, 1)
        session.add([("long", Row(prompts[0], SamplingParams(max_new_tokens=400)))])
        session.add([(f"short{i}", Row(prompts[i], short)) for i in (1, 2)])
        while session.busy():
            outcome = session.step()
            failed.extend(outcome.failed)
            samples.update({f.tag: f.sample for f in outcome.finished})
    assert [f.tag for f in failed] == ["long"] and "needs" in str(failed[0].error)
    assert set(samples) == {"short1", "short2"}
    with pytest.raises(GenerationOutOfMemory, match="needs"):
        generator.generate([Row(prompts[0], SamplingParams(max_new_tokens=400))])


def test_an_interrupt_ends_the_session_instead_of_failing_a_row(tiny_model_paths, prompts, mocker):
    class TimeIsUp(Exception):
        pass

    generator = _generator(tiny_model_paths)
    with generator.session(length=60, interrupts=(TimeIsUp,)) as session:
        session.add([("row", Row(prompts[0], LONG_GREEDY))])
        session.step()
        mocker.patch.object(generator.engine, "step", side_effect=TimeIsUp)
        with pytest.raises(TimeIsUp):
            session.step()
    # Without it being named, the same exception fails the row (alone) instead.
    with generator.session(length=60) as session:
        session.add([("row", Row(prompts[0], LONG_GREEDY))])
        outcome = session.step()  # it joins, then its first step raises
    assert [f.tag for f in outcome.failed] == ["row"] and isinstance(
        outcome.failed[0].error, TimeIsUp
    )
