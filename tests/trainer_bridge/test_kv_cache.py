"""The KV cache's arithmetic (what a token and a row cost, how many rows fit) and its slots."""

import pytest
import torch
from transformers import LlamaConfig

from trainer_bridge.kv_cache import (
    CPU_MAX_ROWS,
    CPU_TOKEN_BUDGET,
    CUDA_MAX_ROWS,
    KvShape,
    SlotCache,
    batch_buckets,
    bucket_for,
    length_bucket,
    plan_cache,
    rows_that_fit,
)

GIB = 2**30


@pytest.fixture
def half_billion() -> KvShape:
    """The benchmark's 0.5B Llama in bfloat16: 24 layers, 16 kv heads of 64, vocab 3072."""
    config = LlamaConfig(
        vocab_size=3072,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        intermediate_size=4864,
    )
    return KvShape.from_config(config, dtype_bytes=2)


def test_a_tokens_keys_and_values_by_hand(half_billion):
    # 2 (keys, values) x 24 layers x 16 heads x 64 dims x 2 bytes.
    assert half_billion.bytes_per_token == 98_304
    # Grouped-query attention counts kv heads only: Llama-3-8B's 32 layers x 8 x 128.
    gqa = LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
    )
    assert KvShape.from_config(gqa, dtype_bytes=2).bytes_per_token == 131_072
    assert KvShape.from_config(gqa, dtype_bytes=4).bytes_per_token == 262_144


def test_what_a_row_costs_and_how_many_fit(half_billion):
    # Per token: 98,304 cache + 20 bookkeeping + 16 heads x 4 bytes of attention score.
    assert half_billion.token_bytes == 98_388
    # Per row: (8 x 1024 + 3 x 4864) activations x 2 bytes + 40 bytes x 3072 vocabulary.
    assert half_billion.step_bytes_per_row == 45_568 + 122_880
    assert half_billion.row_bytes(128) == 128 * 98_388 + 168_448 == 12_762_112
    assert rows_that_fit(half_billion, free_bytes=10 * GIB, length=128) == 841
    assert rows_that_fit(half_billion, free_bytes=12_762_111, length=128) == 0
    with pytest.raises(ValueError):
        rows_that_fit(half_billion, free_bytes=GIB, length=0)


def test_the_plan_on_a_gpu_fills_the_free_memory(half_billion):
    plan = plan_cache(half_billion, free_bytes=80 * GIB, memory_fraction=0.85)
    # 85% of 80 GiB, less a prefill of 16,384 tokens (746,586,112 bytes) and a step of 4096
    # rows (4096 x 168,448), in tokens of 98,388 bytes.
    budget = int(80 * GIB * 0.85)
    working = 746_586_112 + CUDA_MAX_ROWS * 168_448
    assert plan.tokens == (budget - working) // 98_388 == 727_506
    assert plan.max_rows == CUDA_MAX_ROWS
    assert plan.slots(128) == 4096 and plan.slots(1024) == 710
    assert "85% of 80.0 GiB free" in plan.describe() and "1024: 710" in plan.describe()


def test_a_small_device_gets_fewer_rows_and_settings_win(half_billion):
    plan = plan_cache(half_billion, free_bytes=2 * GIB, memory_fraction=0.85)
    assert plan.tokens == 3_951
    assert plan.max_rows == 3_951 // 64  # no more rows than 64-token slots in the cache
    assert plan.slots(64) == 61 and plan.slots(4096) == 0

    chosen = plan_cache(
        half_billion, free_bytes=80 * GIB, memory_fraction=0.85, token_budget=10_000, max_rows=7
    )
    assert (chosen.tokens, chosen.max_rows) == (10_000, 7)
    assert "token budget from settings" in chosen.source


def test_the_cpu_keeps_todays_batch_sizes(half_billion):
    plan = plan_cache(half_billion, free_bytes=None, memory_fraction=0.85)
    assert (plan.tokens, plan.max_rows) == (CPU_TOKEN_BUDGET, CPU_MAX_ROWS) == (32_768, 1024)
    assert plan.slots(64) == 512


def test_buckets():
    assert [length_bucket(n) for n in (1, 64, 65, 128, 129, 1000)] == [64, 64, 128, 128, 256, 1024]
    assert batch_buckets(4096)[:12] == [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192]
    assert batch_buckets(4096)[-3:] == [2048, 3072, 4096]
    assert batch_buckets(100) == [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 100]
    assert batch_buckets(3) == [1, 2, 3]
    assert [bucket_for(n, batch_buckets(4096)) for n in (1, 3, 17, 1025, 4096)] == [
        1,
        4,
        24,
        1536,
        4096,
    ]
    with pytest.raises(ValueError):
        bucket_for(5, [1, 2, 4])


def test_slots_hold_each_prompt_from_column_zero_and_decode_at_each_rows_position():
    shape = KvShape(
        layers=1, kv_heads=1, head_dim=2, dtype_bytes=4, vocab=8, hidden=2, intermediate=4
    )
    cache = SlotCache(shape, tokens=24, dtype=torch.float32, device="cpu")
    cache.layout(slots=3, length=8)
    assert cache.keys[0].shape == (3, 1, 8, 2)

    # Two right-padded prompts of 2 and 4 tokens (width 4) go into slots 2 and 0.
    keys = torch.arange(1.0, 17.0).view(2, 1, 4, 2)
    cache.prefill(torch.tensor([2, 0]))
    seen_keys, _ = cache.update(keys, keys * 10, 0)
    assert seen_keys is keys  # the prefill attends to the prompts themselves
    assert cache.keys[0][2, 0, :2].tolist() == [[1.0, 2.0], [3.0, 4.0]]  # from column 0
    assert cache.keys[0][0, 0, :4].flatten().tolist() == list(range(9, 17))
    assert cache.values[0][2, 0, 0].tolist() == [10.0, 20.0]
    assert cache.keys[0][1].abs().sum() == 0  # the other slot untouched

    # A step of slots [0, 3): each row writes at its own position, attention sees 6 columns.
    positions = torch.tensor([4, 0, 2])
    cache.decode(rows=3, length=6, row_ids=torch.arange(3), positions=positions)
    new = torch.tensor([[[[100.0, 100.0]]], [[[200.0, 200.0]]], [[[300.0, 300.0]]]])
    seen_keys, _ = cache.update(new, new, 0)
    assert seen_keys.shape == (3, 1, 6, 2)
    assert cache.keys[0][0, 0, 4].tolist() == [100.0, 100.0]
    assert cache.keys[0][2, 0, 2].tolist() == [300.0, 300.0]
    assert cache.keys[0][2, 0, :2].tolist() == [[1.0, 2.0], [3.0, 4.0]]  # the prompt stays

    with pytest.raises(ValueError, match="need 32 tokens"):
        cache.layout(slots=4, length=8)
    # A model whose layers do not match the config it was planned from is named, not garbled.
    cache.decode(rows=1, length=2, row_ids=torch.arange(1), positions=torch.tensor([0]))
    with pytest.raises(RuntimeError, match="cannot cache this model's attention"):
        cache.update(torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2), 0)
