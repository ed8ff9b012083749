"""The tokenizer set-up every stage shares: the end of a turn, a pad token of its own, left
padding, and one rendering of (prompt, reply) that matches the chat template."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer_bridge.tiny_model import END_OF_TURN_TOKEN, EOS_TOKEN, PAD_TOKEN
from trainer_bridge.training.checkpoints import fit_to_tokenizer, load_tokenizer
from trainer_bridge.training.tokens import (
    Renderer,
    TokenizerProblem,
    end_of_turn_id,
    pad_token_problem,
    prepare_tokenizer,
)

PROMPT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Where is my kettle?"},
]


@pytest.fixture
def tokenizer(tiny_model_paths):
    return AutoTokenizer.from_pretrained(tiny_model_paths.policy)


def test_the_end_of_turn_comes_from_the_chat_template(tokenizer):
    assert tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)) == END_OF_TURN_TOKEN
    # A template that ends turns with nothing special falls back to end-of-sequence.
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id


def test_prompt_and_reply_render_as_the_chat_template_does(tokenizer):
    renderer = Renderer(tokenizer)
    reply = "Sure. Look on the shelf, next to the teapot."
    ids = renderer.prompt_ids(PROMPT) + renderer.reply_ids(reply)
    whole = tokenizer.apply_chat_template(
        [*PROMPT, {"role": "assistant", "content": reply}], tokenize=True, return_dict=False
    )
    # The template's rendering, cut right after the turn's end token (what PPO scores).
    assert ids == list(whole[: len(ids)])
    assert ids[-1] == renderer.end_of_turn_id
    assert tokenizer.decode(whole[len(ids) :]) == "\n"


def test_sampled_replies_are_cut_after_the_end_of_their_turn(tokenizer):
    renderer = Renderer(tokenizer)
    end, pad = renderer.end_of_turn_id, tokenizer.pad_token_id
    assert renderer.reply_from_sample([11, 12, end, 13, 14]) == [11, 12, end]
    assert renderer.reply_from_sample([11, 12, pad, pad]) == [11, 12]
    assert renderer.reply_from_sample([11, 12]) == [11, 12]


def test_a_pad_token_that_ends_sequences_is_replaced(tokenizer):
    tokenizer.pad_token = EOS_TOKEN
    tokenizer.padding_side = "right"
    assert pad_token_problem(tokenizer) == f"pads with an end token ({EOS_TOKEN!r})"
    added = prepare_tokenizer(tokenizer)
    assert added is True
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, end_of_turn_id(tokenizer))
    assert tokenizer.padding_side == "left"
    assert pad_token_problem(tokenizer) is None
    assert prepare_tokenizer(tokenizer) is False  # nothing more to do


def test_a_tokenizer_without_a_chat_template_is_refused(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(TokenizerProblem, match="no chat template"):
        prepare_tokenizer(tokenizer)


def test_a_new_pad_token_grows_the_embeddings_and_is_known_to_the_model(tiny_model_paths):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_paths.policy)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_paths.policy)
    rows = model.get_input_embeddings().num_embeddings
    tokenizer.add_special_tokens({"pad_token": "<|new-pad|>"})
    fit_to_tokenizer(model, tokenizer)
    assert model.get_input_embeddings().num_embeddings == rows + 1 == len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id == rows
    assert model.generation_config.pad_token_id == rows


def test_the_padding_side_is_set_on_load_whatever_was_saved(tiny_model_paths, tmp_path):
    copy = tmp_path / "policy"
    shutil.copytree(tiny_model_paths.policy, copy)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["padding_side"] = "right"
    config_path.write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(copy).padding_side == "right"
    tokenizer, added = load_tokenizer(copy)
    assert tokenizer.padding_side == "left"
    assert added is False
