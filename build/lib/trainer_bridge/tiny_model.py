"""The tiny local policy and reward model that tests and the demo load instead of a hub model."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer_bridge.loading import quiet_progress_bars

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, PreTrainedModel, PreTrainedTokenizerFast

MARKER_FILE = "parley-model.json"
MARKER_FORMAT = "parley-tiny-model"
MARKER_VERSION = 1

# Vocabulary tokens, not credentials (ruff's S105 goes by the names).
PAD_TOKEN = "<|pad|>"  # noqa: S105
EOS_TOKEN = "<|endoftext|>"  # noqa: S105
END_OF_TURN_TOKEN = "<|end|>"  # noqa: S105
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, *ROLE_TOKENS.values(), END_OF_TURN_TOKEN]

# Jinja whitespace is fiddly; one expression per message keeps the rendering exactly
# "<|role|>\n{content}<|end|>\n", which the model is trained on.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('Unknown role: ' ~ message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' ~ message['role'] ~ '|>\\n' ~ message['content'] ~ '<|end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)

VOCAB_SIZE = 3072
N_DIALOGUES = 1500
# Fixed step count rather than a time budget: a time budget would make weights depend on the
# machine. ~3 s on two idle CPU cores, enough for greedy replies that read as template-shaped
# sentences and end with <|end|>.
TRAIN_STEPS = 200
TRAIN_BATCH = 8
TRAIN_WINDOW = 64
TRAIN_LEARNING_RATE = 5e-3


@dataclass(frozen=True)
class TinyModelPaths:
    policy: Path
    reward: Path


# --- Corpus ---------------------------------------------------------------------------------


def _words(*lines: str) -> tuple[str, ...]:
    return tuple(" ".join(lines).split())


_NAMES = _words(
    "Ada Ben Chloe Dev Elif Farah Gus Hana Ivan Jun Kofi Lena Mateo Nia Omar Priya Quinn Rosa "
    "Sami Tara Uma Victor Wen Yusuf Zoe Arlo Bea Cyrus Dora Emil Fern Gita Hugo Iris Joel Kira "
    "Leon Mira Nico Olga Pablo Rhea Silas Theo Ursula Vera Wanda Xavier Yara Zane Alma Bruno "
    "Celia Dmitri Esme Felix Greta Hiro Ines Jonah Keiko Luca Maeve Nadia Oscar Petra Rafael"
)
_NOUNS = _words(
    "garden kitchen bicycle library river mountain train market museum recipe letter piano "
    "guitar camera lantern window blanket teapot notebook compass harbour bakery orchard meadow "
    "forest bridge station workshop festival concert painting sweater umbrella backpack puzzle "
    "kettle ladder basket candle mirror pillow carpet bucket hammer shovel tomato pepper lemon "
    "onion carrot potato pumpkin sandwich biscuit pancake noodle village island desert valley "
    "tunnel castle cottage balcony chimney fence gate hedge pond stream cloud storm rainbow "
    "sunset breakfast dinner picnic journey holiday lesson story poem song drawing sculpture "
    "map ticket wallet pencil crayon ribbon button needle thread scarf glove boot jacket helmet "
    "kite boat canoe tent stove fridge oven spoon plate bowl jar bottle shelf drawer cupboard "
    "sofa chair table desk lamp clock calendar diary bell parrot kitten puppy rabbit hamster "
    "turtle goldfish sparrow robin owl fox badger hedgehog squirrel beetle butterfly violin "
    "trumpet drum flute harp banjo cello accordion saxophone whistle radio telescope microscope "
    "magnet battery torch bulb cable socket switch printer keyboard monitor laptop tablet phone "
    "envelope stamp postcard parcel magazine newspaper dictionary atlas cookbook album poster "
    "frame vase teacup saucer mug napkin tablecloth apron whisk ladle grater sieve "
    "colander skillet saucepan wok teaspoon fork knife cutlery pantry cellar attic garage porch "
    "doorbell doormat staircase corridor hallway bedroom bathroom wardrobe curtain radiator "
    "fireplace bookcase armchair cushion quilt hammock swing slide sandpit greenhouse vineyard "
    "farmhouse barn stable tractor wheelbarrow rake hoe trowel watering seed sapling "
    "sunflower daisy tulip rose lavender rosemary basil thyme parsley mint cucumber lettuce "
    "cabbage spinach broccoli cauliflower courgette aubergine mushroom strawberry raspberry "
    "blueberry cherry apple pear plum peach apricot melon banana orange grape walnut almond "
    "hazelnut chestnut bread cheese butter yoghurt honey jam porridge soup stew curry salad "
    "omelette muffin crumpet scone waffle tart pie cake cookie lighthouse cathedral fountain "
    "statue playground stadium theatre cinema gallery aquarium zoo airport ferry tram bus "
    "scooter skateboard sledge glacier volcano waterfall canyon cliff beach dune lagoon reef "
    "marsh swamp prairie savanna jungle hill summit ridge cave quarry"
)
_ADJECTIVES = _words(
    "quiet bright small old new warm cold busy gentle heavy light simple careful friendly "
    "curious green blue red yellow sunny rainy tidy messy sturdy fragile tiny huge shiny dusty "
    "soft rough smooth sharp blunt fresh stale sweet sour salty spicy crisp soggy noisy calm "
    "clever patient cheerful sleepy hungry thirsty muddy sandy windy foggy frosty golden silver "
    "wooden metal paper woolly cosy narrow wide tall short round square crooked straight "
    "purple orange pink brown grey black white striped spotted polished rusty creaky squeaky "
    "fluffy prickly slippery sticky bumpy glossy faded vivid pale dark ancient modern handmade "
    "borrowed favourite spare broken brand elegant humble generous lively lonely proud brave "
    "shy tired restless peaceful lovely ordinary unusual delicate enormous miniature ripe "
    "juicy bitter mild chilly humid breezy gloomy cloudless starry moonlit"
)
_ADVERBS = _words(
    "slowly gently carefully quickly firmly lightly neatly patiently quietly evenly briskly "
    "thoroughly loosely tightly calmly steadily happily gradually regularly properly softly"
)
_NUMBERS = _words("two three four five six seven eight nine ten twelve twenty")
# (base, gerund, past): English inflection is irregular enough that spelling it out is simpler.
_VERBS = [
    tuple(triple.split("/"))
    for triple in _words(
        "fix/fixing/fixed clean/cleaning/cleaned paint/painting/painted plant/planting/planted "
        "cook/cooking/cooked bake/baking/baked read/reading/read write/writing/wrote "
        "carry/carrying/carried find/finding/found build/building/built repair/repairing/repaired "
        "sort/sorting/sorted pack/packing/packed wash/washing/washed fold/folding/folded "
        "measure/measuring/measured choose/choosing/chose visit/visiting/visited "
        "store/storing/stored water/watering/watered sketch/sketching/sketched "
        "polish/polishing/polished tune/tuning/tuned mend/mending/mended wrap/wrapping/wrapped "
        "dry/drying/dried check/checking/checked open/opening/opened close/closing/closed "
        "move/moving/moved share/sharing/shared describe/describing/described "
        "photograph/photographing/photographed decorate/decorating/decorated "
        "prepare/preparing/prepared borrow/borrowing/borrowed lend/lending/lent "
        "grow/growing/grew feed/feeding/fed sew/sewing/sewed "
        "knit/knitting/knitted peel/peeling/peeled chop/chopping/chopped stir/stirring/stirred "
        "boil/boiling/boiled roast/roasting/roasted slice/slicing/sliced label/labelling/labelled "
        "hang/hanging/hung lift/lifting/lifted push/pushing/pushed pull/pulling/pulled "
        "sweep/sweeping/swept scrub/scrubbing/scrubbed oil/oiling/oiled sand/sanding/sanded "
        "trim/trimming/trimmed prune/pruning/pruned harvest/harvesting/harvested "
        "sell/selling/sold buy/buying/bought rent/renting/rented explore/exploring/explored"
    )
]
_TIMES = (
    "today",
    "tomorrow",
    "this morning",
    "this evening",
    "on Sunday",
    "on Monday",
    "after lunch",
    "before dinner",
    "next week",
    "tonight",
    "in spring",
    "in winter",
    "at the weekend",
    "every day",
)
_PLACES = (
    "in the garden",
    "at the station",
    "near the river",
    "by the window",
    "in the kitchen",
    "on the balcony",
    "under the stairs",
    "in the shed",
    "at the market",
    "behind the house",
    "on the top shelf",
    "in a dry cupboard",
)

_USER_TEMPLATES = (
    "How do I {verb} a {adj} {noun}?",
    "Can you help me {verb} the {noun} {time}?",
    "What is the best way to {verb} an old {noun}?",
    "Hi, I'm {name}. I want to {verb} my {noun}.",
    "Why does my {noun} look so {adj}?",
    "Tell me something about the {noun} {place}.",
    "Should I {verb} the {noun} or the {noun2} first?",
    "Thanks! What about the {noun2}?",
    "Write a short note to {name} about the {noun}.",
    "Is it a good idea to {verb} a {noun} {time}?",
    "My friend {name} says a {noun} should be {adj}. Is that true?",
    "Where should I keep a {adj} {noun}?",
    "Give me one tip for {gerund} a {noun}.",
    "I lost my {noun}. Where could it be?",
    "Describe a {adj} {noun} in one sentence.",
    "Yesterday I {past} {number} {nouns}. What should I do with them?",
    "Do you think {name} {past} the {noun} {adverb}?",
    "I have {number} {adj} {nouns} {place}. Any ideas?",
)
_ASSISTANT_TEMPLATES = (
    "Sure. Start by {gerund} the {noun} {adverb}, then {verb2} it {time}.",
    "Good question, {name}. A {adj} {noun} is easier to {verb} {time}.",
    "You could {verb} the {noun} first. After that, {verb2} the {noun2} {place}.",
    "I would {verb} it {adverb}. Most people find that a {adj} {noun} lasts longer.",
    "Dear {name}, the {noun} is {adj} now. See you {time}.",
    "Yes, that is fine. Keep the {noun} {place} and check it {time}.",
    "Not quite. A {noun} gets {adj} when you {verb} it too often.",
    "Try {gerund} it {adverb}. If it still looks {adj}, ask {name} for help.",
    "Look {place} first. A {noun} often ends up next to the {noun2}.",
    "It is a {adj} {noun} with a {adj2} {noun2} beside it.",
    "One tip: {verb} the {noun} {adverb} and let it rest {time}.",
    "That depends. A {adj} {noun} needs less care than a {adj2} one.",
    "Well done! You {past} them {adverb}. Now {verb2} the {nouns2} {time}.",
    "Maybe. {name} {past} {number} {nouns} {place} last year.",
    "Put the {nouns} {place}, {number} at a time, and {verb2} them {adverb}.",
)
_SYSTEM_TEMPLATES = (
    "You are a {adj} assistant who knows a lot about the {noun}.",
    "Answer briefly and kindly.",
    "You help {name} with everyday questions.",
    "Keep every answer short and {adj}.",
)


_IRREGULAR_PLURALS = {
    "tomato": "tomatoes",
    "potato": "potatoes",
    "volcano": "volcanoes",
    "shelf": "shelves",
    "scarf": "scarves",
}


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith("fe"):
        return noun[:-2] + "ves"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _fill(template: str, rng: random.Random) -> str:
    verb, gerund, past = rng.choice(_VERBS)
    verb2 = rng.choice(_VERBS)[0]
    noun, noun2 = rng.sample(_NOUNS, 2)
    adj, adj2 = rng.sample(_ADJECTIVES, 2)
    line = template.format(
        name=rng.choice(_NAMES),
        noun=noun,
        noun2=noun2,
        nouns=_plural(noun),
        nouns2=_plural(noun2),
        adj=adj,
        adj2=adj2,
        adverb=rng.choice(_ADVERBS),
        verb=verb,
        verb2=verb2,
        gerund=gerund,
        past=past,
        number=rng.choice(_NUMBERS),
        time=rng.choice(_TIMES),
        place=rng.choice(_PLACES),
    )
    return line[0].upper() + line[1:]


def tiny_dialogues(seed: int = 0, n: int = N_DIALOGUES) -> list[list[dict[str, str]]]:
    """Short chat-format dialogues (a few thousand lines in all), the same for the same seed."""
    rng = random.Random(seed)
    dialogues = []
    for _ in range(n):
        messages = []
        if rng.random() < 0.2:
            messages.append(
                {"role": "system", "content": _fill(rng.choice(_SYSTEM_TEMPLATES), rng)}
            )
        for _turn in range(rng.choice((1, 1, 2))):
            messages.append({"role": "user", "content": _fill(rng.choice(_USER_TEMPLATES), rng)})
            messages.append(
                {"role": "assistant", "content": _fill(rng.choice(_ASSISTANT_TEMPLATES), rng)}
            )
        dialogues.append(messages)
    return dialogues


# --- Tokenizer ------------------------------------------------------------------------------


def build_tiny_tokenizer(dialogues: list[list[dict[str, str]]]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the dialogues, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        # The full byte alphabet lets any text round-trip, not only the corpus's letters.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [message["content"] for messages in dialogues for message in messages]
    tokenizer.train_from_iterator(lines, trainer=trainer)

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=None,
        additional_special_tokens=[*ROLE_TOKENS.values(), END_OF_TURN_TOKEN],
        padding_side="left",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


# --- Models ---------------------------------------------------------------------------------


def _llama_config(tokenizer: PreTrainedTokenizerFast, **extra: Any) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def _training_stream(
    tokenizer: PreTrainedTokenizerFast, dialogues: list[list[dict[str, str]]]
) -> torch.Tensor:
    import torch

    ids: list[int] = []
    for messages in dialogues:
        ids.extend(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def _train_briefly(model: PreTrainedModel, stream: torch.Tensor, *, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LEARNING_RATE, weight_decay=0.0)
    model.train()
    for _step in range(TRAIN_STEPS):
        starts = torch.randint(0, len(stream) - TRAIN_WINDOW, (TRAIN_BATCH,), generator=generator)
        batch = torch.stack([stream[s : s + TRAIN_WINDOW] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def _parameter_count(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())


def _write_marker(
    directory: Path,
    *,
    kind: str,
    seed: int,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    info = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "kind": kind,
        "seed": seed,
        "parameters": _parameter_count(model),
        "architecture": type(model).__name__,
        "vocab_size": len(tokenizer),
        "train_steps": TRAIN_STEPS if kind == "policy" else 0,
    }
    (directory / MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n")


def build_tiny_model(path: Path, *, seed: int = 0) -> TinyModelPaths:
    """Build the tiny policy and reward model into `path/policy` and `path/reward`.

    The same seed gives the same tokenizer and weights (for the same torch and transformers
    versions; CPU and GPU kernels may round differently). Each directory is written whole into a
    staging folder first and then moved into place, so a crash never leaves a half-written
    model where `tiny_model_info` would take it for a complete one.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM, LlamaForSequenceClassification

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dialogues = tiny_dialogues(seed)
    tokenizer = build_tiny_tokenizer(dialogues)
    end_of_turn_id = tokenizer.convert_tokens_to_ids(END_OF_TURN_TOKEN)

    # fork_rng keeps the caller's global RNG untouched while making initialisation seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = LlamaForCausalLM(_llama_config(tokenizer))
        _train_briefly(policy, _training_stream(tokenizer, dialogues), seed=seed)
        reward = LlamaForSequenceClassification(_llama_config(tokenizer, num_labels=1))
    # A reward model normally starts from the policy; sharing the trunk also makes its scores
    # depend on the text in a less arbitrary way than a random trunk would.
    reward.model.load_state_dict(policy.model.state_dict())
    policy.generation_config = GenerationConfig(
        eos_token_id=[end_of_turn_id, tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        max_new_tokens=64,
    )

    targets = TinyModelPaths(policy=path / "policy", reward=path / "reward")
    staging = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=path))
    try:
        with quiet_progress_bars():
            for kind, model in (("policy", policy), ("reward", reward)):
                directory = staging / kind
                model.save_pretrained(directory)
                tokenizer.save_pretrained(directory)
                _write_marker(directory, kind=kind, seed=seed, model=model, tokenizer=tokenizer)
        for kind in ("policy", "reward"):
            target = getattr(targets, kind)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            (staging / kind).replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets


def tiny_model_info(directory: Path) -> dict[str, Any] | None:
    """What `parley-model.json` in `directory` says, or None if it is not a complete tiny model."""
    marker = Path(directory) / MARKER_FILE
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != MARKER_FORMAT:
        return None
    required = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    if not all((Path(directory) / name).is_file() for name in required):
        return None
    return info
