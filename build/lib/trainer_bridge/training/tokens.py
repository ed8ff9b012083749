"""One tokenizer set-up and one rendering of (prompt, reply) shared by every stage.

The reward model is trained on, PPO samples and scores, and the reward evaluation scores the
same token sequence for a reply: the chat template's rendering of the prompt with the assistant
header (`add_generation_prompt`), then the reply's tokens, then the template's end-of-turn
token. PPO cuts sampled replies right after that token, so a reward model trained on whole
rendered conversations (which end with whatever the template puts after the turn) would score
sequences it never saw.

Traps handled here: a tokenizer without a pad token, or whose pad token is the end of sequence
or of the turn, gets a pad token of its own (PPO takes every pad position for padding and every
end token for the end of a reply); and the padding side, which tokenizers do not reliably keep
when saved, is set explicitly wherever a tokenizer is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from trainer_bridge.training.data import Message

PAD_TOKEN = "<|pad|>"  # noqa: S105 - a vocabulary token
# Generation pads on the left so every row's reply starts at the same position.
PADDING_SIDE = "left"
_MARKER = "PARLEYREPLYMARKER"


class TokenizerProblem(ValueError):
    """A tokenizer the stages cannot use (no chat template, nothing that ends a turn)."""


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token the chat template writes right after an assistant turn's text.

    `<|im_end|>`, `<|eot_id|>`, `<|end|>`...; the end-of-sequence token when the template puts
    no special token there.
    """
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARKER}],
            tokenize=False,
        )
    except Exception:  # any template error means "no usable template"
        text = ""
    if _MARKER in text:
        after = text[text.index(_MARKER) + len(_MARKER) :]
        ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
        if ids and _is_special(tokenizer, ids[0]):
            return int(ids[0])
    if tokenizer.eos_token_id is None:
        raise TokenizerProblem(
            "the tokenizer has neither an end-of-turn token in its chat template nor an "
            "end-of-sequence token"
        )
    return int(tokenizer.eos_token_id)


def _is_special(tokenizer: PreTrainedTokenizerBase, token_id: int) -> bool:
    if token_id in set(tokenizer.all_special_ids):
        return True
    token = tokenizer.convert_ids_to_tokens(token_id)
    return token in tokenizer.get_added_vocab()


def pad_token_problem(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Why the tokenizer's pad token cannot serve PPO as it is, or None."""
    if tokenizer.pad_token_id is None:
        return "has no pad token"
    ends = {tokenizer.eos_token_id, end_of_turn_id(tokenizer)}
    if tokenizer.pad_token_id in ends:
        return f"pads with an end token ({tokenizer.pad_token!r})"
    return None


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give the tokenizer a distinct pad token if needed and left padding; True if one was added.

    Checks the chat template first: exports are conversations, so a tokenizer without one
    cannot render them.
    """
    if not tokenizer.chat_template:
        raise TokenizerProblem(
            "the tokenizer has no chat template; Parley's exports are conversations"
        )
    added = False
    if pad_token_problem(tokenizer) is not None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        added = True
    tokenizer.padding_side = PADDING_SIDE
    return added


class Renderer:
    """Token ids of prompts and replies, the same for every stage (see the module docstring)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn_id = end_of_turn_id(tokenizer)

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(i) for i in ids]

    def reply_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids] + [self.end_of_turn_id]

    def reply_from_sample(self, ids: list[int]) -> list[int]:
        """A sampled continuation cut after its first end-of-turn token (kept), pads dropped."""
        pad = self.tokenizer.pad_token_id
        reply = []
        for token in ids:
            if token == pad:
                break
            reply.append(int(token))
            if token == self.end_of_turn_id:
                break
        return reply
