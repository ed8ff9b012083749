"""What a slot holds: the tokens a joining row has seen."""

import random

import torch

from trainer_bridge.slots import seen_tokens


def test_seen_tokens_are_each_prompt_then_its_last_token_to_the_length():
    assert seen_tokens([[5, 6, 7], [9], [1, 2]], 5).tolist() == [
        [5, 6, 7, 7, 7],
        [9, 9, 9, 9, 9],
        [1, 2, 2, 2, 2],
    ]
    assert seen_tokens([[3, 4]], 2).tolist() == [[3, 4]]  # a prompt as long as the slot


def test_seen_tokens_match_the_prompts_written_out_row_by_row():
    rng = random.Random(7)
    prompts = [[rng.randrange(50_000) for _ in range(rng.randint(1, 40))] for _ in range(300)]
    expected = [[*p, *[p[-1]] * (48 - len(p))] for p in prompts]
    seen = seen_tokens(prompts, 48)
    assert seen.dtype == torch.long and seen.tolist() == expected
