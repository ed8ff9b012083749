"""The tiny local model: tokenizer, policy, reward model, determinism and `make_tiny_model`."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from safetensors.torch import load_file

from annotations.model_versions import project_use_model
from annotations.models import ModelVersion, Project
from trainer_bridge.loading import load_policy, load_reward_model
from trainer_bridge.tiny_model import MARKER_FILE, build_tiny_model, tiny_model_info

CHAT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "How do I fix a bicycle?"},
    {"role": "assistant", "content": "Check the chain first."},
]


@pytest.fixture(scope="module")
def policy(tiny_model_paths):
    return load_policy(str(tiny_model_paths.policy))


@pytest.fixture(scope="module")
def reward(tiny_model_paths):
    return load_reward_model(str(tiny_model_paths.reward))


def _stop_ids(tokenizer) -> set[int]:
    return {tokenizer.convert_tokens_to_ids("<|end|>"), tokenizer.eos_token_id}


# --- Tokenizer ------------------------------------------------------------------------------


def test_tokenizer_round_trips_text_outside_its_corpus(policy):
    tokenizer = policy.tokenizer
    text = "Hello, wörld! Ünïcode 🚲 and\ttabs\nand  double  spaces."

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    assert tokenizer.decode(ids) == text
    assert 2000 <= len(tokenizer) <= 4096


def test_tokenizer_special_tokens(policy):
    tokenizer = policy.tokenizer

    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    for token in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [
            tokenizer.convert_tokens_to_ids(token)
        ]


def test_chat_template_renders_roles_and_generation_prompt(policy):
    tokenizer = policy.tokenizer

    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False)
    prompt = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)

    assert rendered == (
        "<|system|>\nAnswer briefly.<|end|>\n"
        "<|user|>\nHow do I fix a bicycle?<|end|>\n"
        "<|assistant|>\nCheck the chain first.<|end|>\n"
    )
    assert prompt.endswith("<|user|>\nHow do I fix a bicycle?<|end|>\n<|assistant|>\n")


def test_chat_template_rejects_unknown_roles(policy):
    with pytest.raises(Exception, match="Unknown role"):
        policy.tokenizer.apply_chat_template([{"role": "robot", "content": "hi"}], tokenize=False)


def test_tokenizer_pads_on_the_left(policy):
    tokenizer = policy.tokenizer

    batch = tokenizer(["a much longer line of text here", "short"], padding=True)

    short_ids, short_mask = batch["input_ids"][1], batch["attention_mask"][1]
    n_pad = short_mask.count(0)
    assert n_pad > 0
    assert short_mask == [0] * n_pad + [1] * (len(short_mask) - n_pad)
    assert short_ids[:n_pad] == [tokenizer.pad_token_id] * n_pad


# --- Policy and reward model ----------------------------------------------------------------


def _chat_batch(tokenizer, conversations):
    return tokenizer.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        padding=True,
        return_tensors="pt",
        return_dict=True,
    )


def test_policy_generates_and_stops_for_a_padded_batch(policy):
    tokenizer, model = policy
    conversations = [
        [{"role": "user", "content": "Can you help me paint the old fence in the garden today?"}],
        [{"role": "user", "content": "Hi"}],
    ]
    inputs = _chat_batch(tokenizer, conversations)
    alone_inputs = _chat_batch(tokenizer, conversations[1:])
    prompt_len = inputs["input_ids"].shape[1]
    assert inputs["attention_mask"][1, 0] == 0  # the short prompt really is padded

    with torch.inference_mode():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=48)
        alone = model.generate(**alone_inputs, do_sample=False, max_new_tokens=48)

    assert torch.equal(output[:, :prompt_len], inputs["input_ids"])
    pad, stops = tokenizer.pad_token_id, _stop_ids(tokenizer)
    replies = output[:, prompt_len:].tolist()
    for row in replies:
        assert row[0] not in stops | {pad}, "generated nothing"
        # The brief training teaches replies to end with <|end|> well within 48 tokens.
        first_stop = next((i for i, t in enumerate(row) if t in stops), None)
        assert first_stop is not None, tokenizer.decode(row)
        assert set(row[first_stop + 1 :]) <= {pad}
    # Left padding with its attention mask must not change what the short prompt produces.
    alone_reply = alone[0, alone_inputs["input_ids"].shape[1] :].tolist()
    assert [t for t in replies[1] if t != pad] == [t for t in alone_reply if t != pad]


def test_reward_model_scores_each_sequence_despite_padding(reward):
    tokenizer, model = reward
    long_chat = CHAT
    short_chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]

    def encode(conversations):
        return tokenizer.apply_chat_template(
            conversations, padding=True, return_tensors="pt", return_dict=True
        )

    with torch.inference_mode():
        batch = model(**encode([long_chat, short_chat])).logits
        short_alone = model(**encode([short_chat])).logits

    assert batch.shape == (2, 1)
    assert torch.allclose(batch[1], short_alone[0], atol=1e-5)
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_saved_models_describe_themselves(tiny_model_paths, policy, reward):
    for directory, loaded, kind in (
        (tiny_model_paths.policy, policy, "policy"),
        (tiny_model_paths.reward, reward, "reward"),
    ):
        info = json.loads((directory / MARKER_FILE).read_text())
        assert info["kind"] == kind
        assert info["seed"] == 0
        assert info["parameters"] == sum(p.numel() for p in loaded.model.parameters())
        assert tiny_model_info(directory) == info
    stop_ids = policy.model.generation_config.eos_token_id
    assert set(stop_ids) == _stop_ids(policy.tokenizer)
    assert policy.model.generation_config.pad_token_id == policy.tokenizer.pad_token_id


def test_build_is_deterministic_for_a_seed(tiny_model_paths, tmp_path):
    again = build_tiny_model(tmp_path, seed=0)

    for first, second in (
        (tiny_model_paths.policy, again.policy),
        (tiny_model_paths.reward, again.reward),
    ):
        weights_first = load_file(first / "model.safetensors")
        weights_second = load_file(second / "model.safetensors")
        assert weights_first.keys() == weights_second.keys()
        assert all(torch.equal(weights_first[k], weights_second[k]) for k in weights_first)
        assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_trainer_bridge_modules_import_without_torch():
    # The web process imports services (and Django may list the command) at start-up;
    # torch and transformers must only load when a model is actually built or loaded.
    code = (
        "import sys, django; django.setup();"
        "import trainer_bridge.services, trainer_bridge.loading, trainer_bridge.tiny_model;"
        "import trainer_bridge.management.commands.make_tiny_model;"
        # The pages, the API and the services that queue requests import these at start-up.
        "import config.urls, trainer_bridge.tasks, trainer_bridge.admin;"
        "heavy = {'torch', 'transformers', 'tokenizers'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- make_tiny_model ------------------------------------------------------------------------


@pytest.fixture
def copied_model(tiny_model_paths, tmp_path) -> Path:
    target = tmp_path / "copied"
    shutil.copytree(tiny_model_paths.policy.parent, target)
    return target


def _make(*args, **options) -> str:
    out = io.StringIO()
    call_command("make_tiny_model", *args, stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_make_tiny_model_registers_models_and_wires_the_project(tmp_path):
    project = Project.objects.create(slug="alpha", name="Alpha")
    path = tmp_path / "models" / "tiny"

    first = _make(str(path), project="alpha")
    weights_mtime = (path / "policy" / "model.safetensors").stat().st_mtime_ns
    second = _make(str(path), project="alpha")

    policy = ModelVersion.objects.get(name="tiny-policy")
    reward = ModelVersion.objects.get(name="tiny-reward")
    assert ModelVersion.objects.count() == 2
    assert (policy.kind, policy.source) == ("policy", str(path.resolve() / "policy"))
    assert (reward.kind, reward.source) == ("reward", str(path.resolve() / "reward"))
    assert reward.parent == policy
    project.refresh_from_db()
    assert project.draft_model == policy
    assert list(project.candidate_models.all()) == [policy]
    assert "Building" in first and "parameters" in first and "Sample reply" in first
    assert "not rebuilding" in second
    assert (path / "policy" / "model.safetensors").stat().st_mtime_ns == weights_mtime


@pytest.mark.django_db
def test_keep_chosen_leaves_the_models_a_lead_chose(copied_model):
    project = Project.objects.create(slug="alpha", name="Alpha")
    chosen = ModelVersion.objects.create(name="lead-choice", source="x", kind="policy")
    project.draft_model = chosen
    project.save()
    project.candidate_models.add(chosen)

    output = _make(str(copied_model), project="alpha", keep_chosen=True)

    project.refresh_from_db()
    assert project.draft_model == chosen
    assert list(project.candidate_models.all()) == [chosen]
    assert "keeps its models" in output
    # A project with no draft model yet gets the tiny one, as on the first `make run`.
    fresh = Project.objects.create(slug="fresh", name="Fresh")
    _make(str(copied_model), project="fresh", keep_chosen=True)
    fresh.refresh_from_db()
    assert fresh.draft_model.name == "tiny-policy"


@pytest.mark.django_db
def test_make_tiny_model_reuses_a_built_model_under_another_prefix(copied_model):
    output = _make(str(copied_model), name_prefix="demo")

    assert "not rebuilding" in output
    assert set(ModelVersion.objects.values_list("name", flat=True)) == {
        "demo-policy",
        "demo-reward",
    }


@pytest.mark.django_db
def test_reward_model_cannot_be_a_projects_draft(copied_model):
    project = Project.objects.create(slug="beta", name="Beta")
    _make(str(copied_model))

    with pytest.raises(ValidationError):
        project_use_model(project=project, model_version=ModelVersion.objects.get(kind="reward"))
    project.refresh_from_db()
    assert project.draft_model is None


@pytest.mark.django_db
def test_make_tiny_model_rejects_an_unknown_project(copied_model):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        _make(str(copied_model), project="nope")
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_make_tiny_model_rejects_a_file_as_path(tmp_path):
    file = tmp_path / "not-a-dir"
    file.write_text("x")

    with pytest.raises(CommandError, match="not a directory"):
        _make(str(file))


@pytest.mark.django_db
def test_make_tiny_model_rejects_a_bad_name_prefix(tmp_path):
    with pytest.raises(CommandError, match="invalid name"):
        _make(str(tmp_path), name_prefix="no spaces")
    assert not (tmp_path / "policy").exists()


@pytest.mark.django_db
def test_make_tiny_model_will_not_silently_change_the_seed(copied_model):
    with pytest.raises(CommandError, match="seed 0, not 3.*--force"):
        _make(str(copied_model), seed=3)


@pytest.mark.django_db
def test_make_tiny_model_will_not_overwrite_other_files_without_force(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "precious.txt").write_text("keep me")

    with pytest.raises(CommandError, match="not a tiny model.*--force"):
        _make(str(tmp_path))
    assert (tmp_path / "policy" / "precious.txt").read_text() == "keep me"
