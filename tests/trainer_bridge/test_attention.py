"""The engine's own attention: exact against a plain reference, and greedy parity with
transformers' `generate` on models whose query heads share key/value heads (Llama with grouped
queries, and Gemma 2 with its capped scores)."""

from functools import partial

import pytest
import torch

from trainer_bridge.attention import ENGINE_ATTENTION, STEP_ATTENTION, slot_attention
from trainer_bridge.backends import LoadedGenerator, Row
from trainer_bridge.decoding import EngineSettings
from trainer_bridge.loading import load_policy
from trainer_bridge.sampling_params import SamplingParams


def _reference(query, key, value, visible, scale, softcap=None):
    """Softmax attention written out: key/value heads repeated, `visible` [b, 1, q, k]."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = query @ key.transpose(-1, -2) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ value).transpose(1, 2)


@pytest.fixture
def heads():
    torch.manual_seed(3)
    batch, kv_heads, groups, dim = 3, 2, 3, 8
    return batch, kv_heads, groups, dim


def test_a_causal_prefill_with_grouped_heads_matches_the_reference(heads):
    batch, kv_heads, groups, dim = heads
    query = torch.randn(batch, kv_heads * groups, 5, dim)
    key, value = torch.randn(2, batch, kv_heads, 5, dim)
    output, weights = slot_attention(None, query, key, value, None, scaling=0.3)
    causal = torch.ones(5, 5, dtype=torch.bool).tril().expand(batch, 1, 5, 5)
    assert weights is None and output.shape == (batch, 5, kv_heads * groups, dim)
    torch.testing.assert_close(output, _reference(query, key, value, causal, 0.3))
    # A later token never changes an earlier one's output (it really is causal).
    changed = key.clone()
    changed[:, :, 4] += 5.0
    again, _ = slot_attention(None, query, changed, value, None, scaling=0.3)
    torch.testing.assert_close(again[:, :4], output[:, :4])
    assert not torch.allclose(again[:, 4], output[:, 4])


@pytest.mark.parametrize(
    "attend", [slot_attention, partial(slot_attention, step="matmul")], ids=["sdpa", "matmul"]
)
def test_a_step_attends_only_to_each_rows_filled_columns(heads, attend):
    batch, kv_heads, groups, dim = heads
    query = torch.randn(batch, kv_heads * groups, 1, dim)
    key, value = torch.randn(2, batch, kv_heads, 7, dim)
    filled = torch.tensor([1, 4, 7])
    visible = (torch.arange(7) < filled.unsqueeze(1))[:, None, None, :]
    output, _ = attend(None, query, key, value, visible, scaling=0.25)
    torch.testing.assert_close(output, _reference(query, key, value, visible, 0.25))
    # Columns past a row's position do not count, whatever they hold.
    noisy = key.clone()
    noisy[0, :, 1:] = 1e4
    again, _ = attend(None, query, noisy, value, visible, scaling=0.25)
    torch.testing.assert_close(again, output)


def test_the_way_a_step_attends_is_one_the_engine_knows():
    assert set(STEP_ATTENTION) == {"sdpa", "matmul"}
    with pytest.raises(ValueError, match="PARLEY_GENERATION_STEP_ATTENTION.*not 'flash'"):
        EngineSettings(step_attention="flash")


def test_capped_scores_match_the_reference_and_sinks_are_refused(heads):
    batch, kv_heads, groups, dim = heads
    query = torch.randn(batch, kv_heads * groups, 4, dim) * 4
    key, value = torch.randn(2, batch, kv_heads, 4, dim)
    causal = torch.ones(4, 4, dtype=torch.bool).tril().expand(batch, 1, 4, 4)
    output, _ = slot_attention(None, query, key, value, None, scaling=0.5, softcap=2.0)
    torch.testing.assert_close(output, _reference(query, key, value, causal, 0.5, softcap=2.0))
    uncapped = _reference(query, key, value, causal, 0.5)
    assert not torch.allclose(output, uncapped)
    with pytest.raises(ValueError, match="attention sinks"):
        slot_attention(None, query, key, value, None, s_aux=torch.zeros(6))


def _gqa_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _gemma2(vocab: int):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=12, max_position_embeddings=256,
        sliding_window=128, attn_logit_softcapping=2.0, final_logit_softcapping=30.0,
        query_pre_attn_scalar=16, initializer_range=0.5,
    )  # fmt: skip
    config._attn_implementation = "eager"
    return Gemma2ForCausalLM(config)


@pytest.mark.parametrize(
    ("build", "step"),
    [(_gqa_llama, "sdpa"), (_gqa_llama, "matmul"), (_gemma2, "sdpa")],
    ids=["llama-gqa", "llama-gqa-matmul", "gemma2"],
)
def test_greedy_rows_of_any_prompt_length_match_transformers_generate(
    tiny_model_paths, build, step
):
    tokenizer, _ = load_policy(str(tiny_model_paths.policy))
    torch.manual_seed(11)
    model = build(len(tokenizer)).eval()
    implementation = model.config._attn_implementation
    settings = EngineSettings(step_attention=step)
    generator = LoadedGenerator(tokenizer, model, device="cpu", settings=settings)
    # Random weights: every row runs to max_new_tokens unless it draws an end token.
    prompts = [(5,), (7, 30, 41), tuple(range(20, 37)), (9, 9, 9, 9, 9, 61)]
    # A strong repetition penalty makes each token depend on the whole row, so any difference
    # in attention shows in the tokens.
    params = SamplingParams(temperature=0, max_new_tokens=12, repetition_penalty=3.0)
    batched = generator.generate([Row(prompt_ids=p, sampling=params) for p in prompts])
    for prompt, sample in zip(prompts, batched, strict=True):
        with torch.no_grad():
            output = model.generate(
                input_ids=torch.tensor([prompt]),
                attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
                max_new_tokens=12, do_sample=False, repetition_penalty=3.0,
                pad_token_id=generator.pad_id,
                eos_token_id=generator.eos_ids,
            )  # fmt: skip
        tokens = output[0, len(prompt) :].tolist()
        stops = [i for i, token in enumerate(tokens) if token in generator.eos_ids]
        tokens = tokens[: stops[0]] if stops else tokens
        expected = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        assert sample.completion_tokens == len(tokens) and sample.text == expected
    # The engine's attention applies to its own forwards only.
    assert model.config._attn_implementation == implementation != ENGINE_ATTENTION
    # A batch of one-token prompts has nothing to prefill: every row starts at its first step.
    alone = generator.generate([Row(prompt_ids=(5,), sampling=params)])
    assert alone == batched[:1]
