"""The decoding engine on the CPU: supported models, the bare forward floor, its memory plan."""

import pytest
import torch

from trainer_bridge.backends import LoadedGenerator, Row
from trainer_bridge.decoding import EngineSettings, UnsupportedModel
from trainer_bridge.engine import DecodeEngine
from trainer_bridge.loading import load_policy
from trainer_bridge.sampling_params import SamplingParams


@pytest.fixture(scope="module")
def loaded(tiny_model_paths):
    tokenizer, model = load_policy(str(tiny_model_paths.policy))
    tokenizer.padding_side = "left"
    return tokenizer, model


def test_the_plan_says_up_front_how_many_rows_fit(loaded):
    tokenizer, model = loaded
    generator = LoadedGenerator(
        tokenizer, model, device="cpu", settings=EngineSettings(max_rows=300)
    )
    plan = generator.plan
    # The tiny model: 2 layers x 4 kv heads x 16 dims x 2 (keys, values) x 4 bytes (float32).
    assert plan.bytes_per_token == 1024
    assert (plan.tokens, plan.max_rows) == (32_768, 300)
    assert plan.slots(64) == 300 and plan.slots(256) == 128
    assert generator.engine.cache is None  # nothing allocated before the first batch


def test_an_attention_the_engine_cannot_cache_is_refused_with_the_reason(loaded):
    _, model = loaded
    model.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(UnsupportedModel, match="'flash_attention_2' attention"):
            DecodeEngine(model, device="cpu", eos_ids=[1], pad_id=0)
    finally:
        model.config._attn_implementation = "sdpa"


def test_a_model_with_attention_sinks_is_refused_when_it_loads(loaded):
    _, model = loaded
    attention = model.model.layers[0].self_attn
    attention.sinks = torch.nn.Parameter(torch.zeros(model.config.num_attention_heads))
    try:
        with pytest.raises(UnsupportedModel, match="attention has sinks"):
            DecodeEngine(model, device="cpu", eos_ids=[1], pad_id=0)
    finally:
        del attention.sinks
    DecodeEngine(model, device="cpu", eos_ids=[1], pad_id=0)  # without them, it loads


def test_eager_attention_decodes_as_sdpa_does(loaded):
    tokenizer, model = loaded
    generator = LoadedGenerator(tokenizer, model, device="cpu")
    prompt = generator.encode_chat([{"role": "user", "content": "How do I boil an egg?"}])
    rows = [Row(prompt, SamplingParams(temperature=0, max_new_tokens=30))]
    sdpa = generator.generate(rows)
    model.config._attn_implementation = "eager"
    try:
        eager = LoadedGenerator(tokenizer, model, device="cpu").generate(rows)
    finally:
        model.config._attn_implementation = "sdpa"
    assert eager == sdpa and sdpa[0].text


def test_the_prefill_computes_logits_only_at_each_rows_last_prompt_token(loaded, mocker):
    """The output layer sees one column a row; a model whose output layer the engine cannot
    reach leaves each prompt's last token to the row's first step. Both give the same tokens."""
    tokenizer, model = loaded
    generator = LoadedGenerator(tokenizer, model, device="cpu")
    questions = ["How do I boil an egg?", "Hi", "Write a letter to Omar about the garden."]
    prompts = generator.encode_chats([[{"role": "user", "content": q}] for q in questions])
    settings = [
        SamplingParams(temperature=0, max_new_tokens=20, repetition_penalty=1.3),
        SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=20, seed=4),
        SamplingParams(temperature=0.8, top_k=20, max_new_tokens=1, seed=9),
    ]
    rows = [Row(prompts[i], settings[i]) for i in range(3)]
    forward = mocker.spy(model, "forward")
    head = mocker.spy(model.get_output_embeddings(), "forward")
    drawn = generator.generate(rows)
    widest, shortest = max(map(len, prompts)), min(map(len, prompts))
    prefill = forward.call_args_list[0].kwargs
    assert prefill["input_ids"].shape == (3, widest)
    assert prefill["logits_to_keep"] == widest - shortest + 1
    assert head.call_args_list[0].args[0].shape == (3, 1, model.config.hidden_size)
    assert all(sample.text for sample in drawn[:2]) and drawn[2].completion_tokens <= 1

    forward.reset_mock()
    generator.engine.lm.head = None
    stepped = generator.generate(rows)
    prefill = forward.call_args_list[0].kwargs
    assert prefill["input_ids"].shape == (3, widest - 1) and prefill["logits_to_keep"] == 1
    assert stepped == drawn


def test_the_forward_floor_runs_the_model_alone_and_leaves_the_engine_idle(loaded, mocker):
    tokenizer, model = loaded
    engine = LoadedGenerator(tokenizer, model, device="cpu").engine
    forward = mocker.spy(model, "forward")
    seconds = engine.forward_floor(rows=8, length=64, steps=5)
    assert seconds > 0 and forward.call_count == 5
    assert {c.kwargs["input_ids"].shape for c in forward.call_args_list} == {torch.Size([8, 1])}
    assert not engine.in_session
    engine.free()
    assert engine.cache is None


class _FakeStream:
    def wait_stream(self, other) -> None:
        pass


def test_graph_mode_captures_every_shape_it_later_replays(loaded, monkeypatch):
    """CUDA graphs' bookkeeping on the CPU: a fake graph replays the step it captured.

    Real capture needs a GPU; this checks what the engine decides around it: every (batch
    bucket, attended length) a session steps with was captured up front, every step is a
    replay, and replayed steps give the tokens eager decoding gives.
    """
    import contextlib

    tokenizer, model = loaded
    plain = LoadedGenerator(tokenizer, model, device="cpu")
    questions = ["How do I boil an egg?", "Hi", "Write a letter to Omar about the garden."]
    prompts = plain.encode_chats([[{"role": "user", "content": q}] for q in questions])
    settings = [  # greedy, seeded nucleus sampling, seeded top-k with a repetition penalty
        SamplingParams(temperature=0, max_new_tokens=30),
        SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=30, seed=4),
        SamplingParams(
            temperature=0.8, top_k=20, repetition_penalty=1.5, max_new_tokens=30, seed=9
        ),
    ]
    rows = [(i, Row(prompts[i % 3], settings[i % 3], i)) for i in range(7)]
    expected = plain.generate([row for _, row in rows])

    generator = LoadedGenerator(
        tokenizer, model, device="cpu", settings=EngineSettings(static_steps=True, max_rows=40)
    )
    engine = generator.engine
    body = engine._decode_body
    captured: list[tuple[int, int]] = []
    replayed: list[tuple[int, int]] = []
    eager: list[tuple[int, int]] = []
    last = {}

    def recording_body(rows_, length, **kwargs):
        last["call"] = (rows_, length, kwargs)
        eager.append((rows_, length))
        return body(rows_, length, **kwargs)

    class FakeGraph:
        def replay(self):
            rows_, length, kwargs = self.call
            replayed.append((rows_, length))
            body(rows_, length, **kwargs)

    @contextlib.contextmanager
    def fake_capture(graph, pool=None):
        yield
        graph.call = last["call"]
        captured.append(graph.call[:2])

    monkeypatch.setattr(engine, "_decode_body", recording_body)
    monkeypatch.setattr(engine.graphs, "enabled", True)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", fake_capture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)

    with generator.session(length=100) as session:
        assert session.length == 128 and session.slots == 40
        buckets = [1, 2, 4, 8, 16, 24, 32, 40]
        assert sorted(captured) == sorted((b, n) for b in buckets for n in (64, 128))
        assert engine.warmups[-1].graphs == 16 and not engine.warmups[-1].error
        eager.clear()
        session.add(rows)
        samples = {}
        while session.busy():
            samples.update({f.tag: f.sample for f in session.step().finished})

    assert eager == [] and len(replayed) == session.steps  # every step was a replay
    assert {length for _, length in replayed} == {64}  # rows of ~50 tokens attend to 64 columns
    assert [samples[i] for i in range(7)] == expected
    # A second session of the same length captures nothing more.
    with generator.session(length=100):
        pass
    assert len(captured) == 16


def test_rows_the_graph_sampler_cannot_settle_are_drawn_again_exactly(loaded):
    # A vocabulary "too large to sort in the graph": the step draws from 4 candidates and the
    # host draws again, over the whole vocabulary, every row whose nucleus reaches further.
    tokenizer, model = loaded
    plain = LoadedGenerator(tokenizer, model, device="cpu")
    narrow = LoadedGenerator(
        tokenizer,
        model,
        device="cpu",
        settings=EngineSettings(static_steps=True, full_sort_vocab=100, candidates=4),
    )
    assert narrow.engine.width == 4
    prompt = plain.encode_chat([{"role": "user", "content": "Tell me about the garden."}])
    wide = SamplingParams(temperature=1.5, top_p=0.99, max_new_tokens=30, seed=3)
    rows = [Row(prompt, wide, i) for i in range(4)]
    settle = []
    chooser = narrow.engine.chooser
    original = chooser.settle
    chooser.settle = lambda state, slots, **kw: (
        settle.append(len(slots)) or original(state, slots, **kw)
    )
    assert narrow.generate(rows) == plain.generate(rows)
    assert sum(settle) > 0  # rows were drawn again, and still gave the exact tokens
