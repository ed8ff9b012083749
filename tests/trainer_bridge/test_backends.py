"""The decoding loop of the transformers backend: greedy parity, per-row sampling, seeds, OOM."""

import pytest
import torch

from trainer_bridge import backends
from trainer_bridge.backends import (
    GenerationOutOfMemory,
    LoadedGenerator,
    ModelCache,
    Row,
)
from trainer_bridge.loading import load_policy
from trainer_bridge.sampling import sample_tokens, sample_tokens_static
from trainer_bridge.sampling_params import SamplingParams

PROMPTS = [
    [{"role": "user", "content": "How do I boil an egg?"}],
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What should I pack for a picnic by the river tomorrow?"},
    ],
    [{"role": "user", "content": "Write a letter to Omar about the garden."}],
    [{"role": "user", "content": "Dear Priya, the kettle is broken"}],
]
GREEDY = SamplingParams(temperature=0, max_new_tokens=40)


@pytest.fixture(scope="module")
def generator(tiny_model_paths):
    tokenizer, model = load_policy(str(tiny_model_paths.policy))
    tokenizer.padding_side = "left"
    return LoadedGenerator(tokenizer, model, device="cpu")


def _reference(generator, prompt_ids, **kwargs) -> list[int]:
    """transformers' own `generate` for one unpadded prompt, cut before the end of the turn."""
    output = generator.model.generate(
        input_ids=torch.tensor([prompt_ids]),
        attention_mask=torch.ones((1, len(prompt_ids)), dtype=torch.long),
        pad_token_id=generator.pad_id,
        eos_token_id=generator.eos_ids,
        do_sample=False,
        **kwargs,
    )
    tokens = output[0, len(prompt_ids) :].tolist()
    stops = [i for i, token in enumerate(tokens) if token in generator.eos_ids]
    return tokens[: stops[0]] if stops else tokens


def _texts(generator, rows):
    return [sample.text for sample in generator.generate(rows)]


@pytest.mark.parametrize("penalty", [1.0, 3.0])
def test_greedy_matches_transformers_generate_alone_and_in_a_padded_batch(generator, penalty):
    # The tiny model's plain greedy reply hardly depends on the prompt; a strong repetition
    # penalty makes it depend on every prompt token, so padding or position mistakes show.
    prompts = generator.encode_chats(PROMPTS)
    assert len({len(ids) for ids in prompts}) > 1  # the batch really is padded
    params = SamplingParams(temperature=0, max_new_tokens=40, repetition_penalty=penalty)
    batched = generator.generate([Row(prompt_ids=ids, sampling=params) for ids in prompts])
    extra = {"repetition_penalty": penalty} if penalty != 1.0 else {}
    for ids, sample in zip(prompts, batched, strict=True):
        reference = _reference(generator, ids, max_new_tokens=40, **extra)
        expected = generator.tokenizer.decode(reference, skip_special_tokens=True).strip()
        assert sample.text == expected and sample.text
        assert sample.completion_tokens == len(reference)
    if penalty != 1.0:
        assert len({sample.text for sample in batched}) == len(prompts)
        plain = generator.generate([Row(prompt_ids=prompts[0], sampling=GREEDY)])[0]
        assert plain.text != batched[0].text


def test_a_seeded_row_does_not_depend_on_its_batch_mates(generator):
    prompts = generator.encode_chats(PROMPTS)
    seeded = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=24, seed=7)
    alone = _texts(
        generator, [Row(prompt_ids=prompts[0], sampling=seeded, sample_index=i) for i in range(3)]
    )
    mates = [
        Row(
            prompt_ids=prompts[1], sampling=SamplingParams(temperature=1.3, seed=99), sample_index=0
        ),
        Row(prompt_ids=prompts[2], sampling=SamplingParams(temperature=0.7, top_k=20)),
        Row(prompt_ids=prompts[2], sampling=GREEDY),
        Row(prompt_ids=prompts[1], sampling=SamplingParams(max_new_tokens=3, seed=7)),
    ]
    rows = [mates[0], mates[1]]
    rows += [Row(prompt_ids=prompts[0], sampling=seeded, sample_index=i) for i in range(3)]
    rows += [mates[2], mates[3]]
    assert _texts(generator, rows)[2:5] == alone
    # The same seed twice gives the same samples; the request's samples differ from each other.
    assert _texts(generator, rows[2:5]) == alone
    assert len(set(alone)) > 1


def test_rows_with_different_settings_share_one_batch(generator, mocker):
    prompts = generator.encode_chats(PROMPTS)
    forward = mocker.spy(generator.model, "forward")
    short = SamplingParams(temperature=0.8, max_new_tokens=3, seed=1)
    samples = generator.generate(
        [
            Row(prompt_ids=prompts[0], sampling=GREEDY),
            Row(prompt_ids=prompts[1], sampling=short),
            Row(prompt_ids=prompts[2], sampling=SamplingParams(temperature=0.5, top_k=5)),
        ]
    )
    prefill_calls = [c for c in forward.call_args_list if c.kwargs["input_ids"].shape[1] > 1]
    assert len(prefill_calls) == 1 and prefill_calls[0].kwargs["input_ids"].shape[0] == 3
    assert samples[1].completion_tokens <= 3
    assert samples[0] == generator.generate([Row(prompt_ids=prompts[0], sampling=GREEDY)])[0]
    # Finished rows leave the batch: no step decodes more rows than are still running.
    widths = [c.kwargs["input_ids"].shape[0] for c in forward.call_args_list[1:]]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 3


def test_cuda_out_of_memory_becomes_generation_out_of_memory(generator, mocker):
    ids = generator.encode_chat(PROMPTS[0])
    mocker.patch.object(
        generator.model, "forward", side_effect=torch.cuda.OutOfMemoryError("CUDA out of memory")
    )
    with pytest.raises(GenerationOutOfMemory, match="out of memory"):
        generator.generate([Row(prompt_ids=ids, sampling=GREEDY)])


def test_injected_faults_still_apply(generator):
    ids = generator.encode_chat(PROMPTS[0])
    rows = [Row(prompt_ids=ids, sampling=GREEDY)] * 3
    with pytest.raises(GenerationOutOfMemory, match="batch of 3 rows > 2"):
        generator.generate(rows, faults={"oom_above_rows": 2})
    assert len(generator.generate(rows[:2], faults={"oom_above_rows": 2})) == 2


# --- sample_tokens: hand-computed draws ------------------------------------------------------


def _draw(probs, *, top_k=0, top_p=1.0, u, candidates=256):
    rows = len(u)
    return sample_tokens(
        torch.tensor([probs] * rows),
        top_k=torch.tensor([top_k] * rows),
        top_p=torch.tensor([top_p] * rows),
        uniforms=torch.tensor(u),
        candidates=candidates,
    ).tolist()


def test_sampling_by_inverse_cdf():
    # Cumulative 0.2, 0.7, 1.0 over tokens 0, 1, 2 (unsorted: no cut needs no sort).
    assert _draw([0.2, 0.5, 0.3], u=[0.1, 0.3, 0.69, 0.71, 0.99]) == [0, 1, 1, 2, 2]


def test_top_p_keeps_the_smallest_set_reaching_p():
    # Sorted 0.5 (token 1), 0.3 (token 2), 0.2 (token 0); top_p 0.7 keeps tokens 1 and 2,
    # renormalised to 0.625 and 0.375.
    assert _draw([0.2, 0.5, 0.3], top_p=0.7, u=[0.0, 0.6, 0.63, 0.99]) == [1, 1, 2, 2]
    assert _draw([0.2, 0.5, 0.3], top_p=0.5, u=[0.0, 0.99]) == [1, 1]


def test_top_k_and_the_candidate_fallback_are_exact():
    assert _draw([0.2, 0.5, 0.3], top_k=1, u=[0.0, 0.99]) == [1, 1]
    # One candidate cannot hold a 0.9 nucleus: the row falls back to the whole vocabulary.
    probs = [0.1, 0.4, 0.3, 0.2]
    u = [0.05, 0.5, 0.8, 0.95]
    # Sorted 0.4, 0.3, 0.2, 0.1 (tokens 1, 2, 3, 0): top_p 0.85 or top_k 3 keep tokens 1, 2, 3.
    assert _draw(probs, top_p=0.85, u=u) == [1, 2, 3, 3]
    assert _draw(probs, top_p=0.85, u=u, candidates=1) == [1, 2, 3, 3]
    assert _draw(probs, top_k=3, u=u, candidates=2) == [1, 2, 3, 3]


# --- the model cache ------------------------------------------------------------------------


def test_torch_threads_are_set_once_when_the_first_model_loads(tiny_model_paths, monkeypatch):
    from tests.factories import ModelVersionFactory

    version = ModelVersionFactory.build(source=str(tiny_model_paths.policy))
    monkeypatch.setattr(backends, "_torch_threads_applied", False)
    set_threads = []
    monkeypatch.setattr(torch, "set_num_threads", set_threads.append)
    cache = ModelCache(capacity=2, torch_threads=1)
    cache.get(version, device="cpu")
    ModelCache(capacity=2, torch_threads=3).get(version, device="cpu")
    assert set_threads == [1]

    monkeypatch.setattr(backends, "_torch_threads_applied", False)
    ModelCache(capacity=2, torch_threads=0).get(version, device="cpu")
    assert set_threads == [1]  # 0 leaves torch's default alone


def test_candidate_widths_never_change_a_draw():
    # Against a plain reference that sorts the whole vocabulary of every row with a cut.
    generator = torch.Generator().manual_seed(0)
    vocab, rows = 50, 300
    probs = (torch.randn(rows, vocab, generator=generator) * 2).softmax(-1)
    top_k = torch.randint(0, vocab + 10, (rows,), generator=generator)
    top_p = torch.rand(rows, generator=generator) * 0.99 + 0.01
    top_p[::4] = 1.0
    uniforms = torch.rand(rows, generator=generator)

    def reference(row: int) -> int:
        limit = int(top_k[row]) if 0 < top_k[row] < vocab else vocab
        if limit == vocab and top_p[row] == 1.0:  # no cut: vocabulary order, nothing sorted
            values, indices = probs[row], torch.arange(vocab)
        else:
            values, indices = probs[row].sort(descending=True)
        kept = (torch.arange(vocab) < limit) & (values.cumsum(0) - values < top_p[row])
        cdf = (values * kept).cumsum(0)
        return int(indices[min(int((cdf <= uniforms[row] * cdf[-1]).sum()), vocab - 1)])

    expected = [reference(row) for row in range(rows)]
    for candidates in (1, 3, 10, 256):
        drawn = sample_tokens(
            probs, top_k=top_k, top_p=top_p, uniforms=uniforms, candidates=candidates
        )
        assert drawn.tolist() == expected
    # The graph-safe sampler: the same tokens for the rows it settles, and it flags the others
    # (their nucleus or top_k reaches past its width); the whole vocabulary settles them all.
    for width in (1, 3, 10, vocab):
        drawn, unsettled = sample_tokens_static(
            probs, top_k=top_k, top_p=top_p, uniforms=uniforms, width=width
        )
        settled = (~unsettled).nonzero().squeeze(-1).tolist()
        assert [drawn[row].item() for row in settled] == [expected[row] for row in settled]
        assert bool(unsettled.any()) == (width < vocab)
