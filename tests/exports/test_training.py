"""The contract with training code: exported folders load with `datasets.load_dataset(folder)`
alone, and a few steps of TRL's SFTTrainer and RewardTrainer run on them with the tiny model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from labelling.importers import prompt_file_import
from tests.exports.conftest import OASST_MISSING, OASST_TREES, export
from tests.factories import say, start

datasets = pytest.importorskip("datasets", reason="needs the `train` extra")
trl = pytest.importorskip("trl", reason="needs the `train` extra")

pytestmark = pytest.mark.django_db

ROWS = 16  # rows each trainer sees
MAX_CHARS = 600  # keeps every row under the token limits below, so none is filtered out


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path, monkeypatch):
    """`load_dataset` writes Arrow caches; keep them in the test's folder, offline."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()


@pytest.fixture
def oasst(project):
    if not OASST_TREES.is_file():
        pytest.skip(OASST_MISSING)
    report = prompt_file_import(
        project=project, source=OASST_TREES.read_bytes(), filename="oasst.jsonl"
    )
    assert report.ok, report.errors
    return project


def load(folder: Path, manifest: dict):
    """The folder as `datasets` reads it, checked against the manifest: every split with rows
    (datasets refuses an empty split, so the card leaves those out)."""
    loaded = datasets.load_dataset(str(folder))
    assert list(loaded) == [name for name, split in manifest["splits"].items() if split["rows"]]
    for name in loaded:
        assert loaded[name].num_rows == manifest["splits"][name]["rows"], name
    return loaded


def short_rows(dataset, columns: tuple[str, ...]):
    def total_chars(row) -> int:
        return sum(len(m["content"]) for column in columns for m in row[column])

    small = dataset.filter(lambda row: total_chars(row) <= MAX_CHARS)
    assert small.num_rows >= ROWS
    return small.select(range(ROWS))


def snapshot(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict, model) -> bool:
    import torch

    return any(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters())


def common_args() -> dict:
    from transformers import TrainingArguments

    # TRL turns checkpointing on under its old name, which recent transformers warns about
    # unless the new one is given: given here, as the training stages give it.
    names = {spec.name for spec in dataclasses.fields(TrainingArguments)}
    checkpointing = (
        {"activation_checkpointing": True} if "activation_checkpointing" in names else {}
    )
    return {
        **checkpointing,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


@pytest.mark.parametrize("gzip", [False, True])
def test_sft_export_loads_and_trains(oasst, tiny_model_paths, tmp_path, gzip):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(oasst, "sft", tmp_path / "sft", validation=0.1, gzip=gzip)
    assert all(split["rows"] > 0 for split in out.manifest["splits"].values())
    loaded = load(out.folder, out.manifest)
    assert set(loaded["train"].column_names) == {"messages", "meta"}
    if gzip:
        return  # loading is what gzip changes; one training run is enough

    train = short_rows(loaded["train"], ("messages",))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_paths.policy)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_paths.policy)
    before = snapshot(model)
    trainer = trl.SFTTrainer(
        model=model,
        args=trl.SFTConfig(output_dir=str(tmp_path / "sft-out"), max_length=256, **common_args()),
        train_dataset=train,  # with its `meta` column: the trainer ignores it
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 2
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    assert changed(before, model)


@pytest.mark.parametrize("gzip", [False, True])
def test_preferences_export_loads_and_trains_a_reward_model(
    oasst, tiny_model_paths, tmp_path, gzip
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = export(oasst, "preferences", tmp_path / "prefs", validation=0.1, gzip=gzip)
    assert all(split["rows"] > 0 for split in out.manifest["splits"].values())
    loaded = load(out.folder, out.manifest)
    assert set(loaded["train"].column_names) == {"prompt", "chosen", "rejected", "meta"}
    first = loaded["train"][0]
    assert first["meta"]["group_id"] > 0 and first["meta"]["margin"] == 1.0
    if gzip:
        return

    train = short_rows(loaded["train"], ("prompt", "chosen", "rejected"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_paths.reward)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_paths.reward)
    assert model.config.num_labels == 1
    before = snapshot(model)
    trainer = trl.RewardTrainer(
        model=model,
        args=trl.RewardConfig(output_dir=str(tmp_path / "rm-out"), max_length=512, **common_args()),
        train_dataset=train,  # with its `meta` column: the trainer ignores it
        processing_class=tokenizer,
    )
    assert trainer.train_dataset.num_rows == ROWS  # nothing was filtered for length
    result = trainer.train()
    assert result.global_step == 2
    assert math.isfinite(result.training_loss)
    assert changed(before, model)


@pytest.mark.parametrize("kind", ["sft", "preferences", "rankings", "prompts"])
def test_an_export_with_an_empty_split_loads(project, tmp_path, kind):
    """A tiny selection leaves validation (and here test) empty; the folder must still load."""
    from tests.factories import UserFactory, ranked_set

    context = start(project, "Only prompt")
    replies = [say(context, text, user=UserFactory()) for text in ("Yes.", "No.")]
    ranked_set(project, context, replies, [(UserFactory(), [[0], [1]])])
    # The conversation's split depends on its id, which the database hands out: take a seed
    # that puts it in train, so validation and test are the empty ones.
    from exports.splits import split_of

    seed = next(
        s
        for s in range(100)
        if split_of(context.conversation_id, seed=s, validation=0.05, test=0.05) == "train"
    )
    out = export(project, kind, tmp_path / kind, validation=0.05, test=0.05, seed=seed)
    counts = {name: split["rows"] for name, split in out.manifest["splits"].items()}
    assert counts["train"] >= 1 and counts["validation"] == counts["test"] == 0, counts
    loaded = load(out.folder, out.manifest)
    assert list(loaded) == ["train"]
    assert list(loaded["train"].column_names)[0] == ("messages" if kind == "sft" else "prompt")


@pytest.mark.parametrize("kind", ["sft", "preferences", "rankings", "prompts"])
def test_the_card_declares_features_as_datasets_writes_them(kind):
    import yaml

    from exports.choices import ExportKind
    from exports.writer import dataset_card

    splits = {"train": {"file": "train.jsonl", "rows": 3, "sha256": "0" * 64, "bytes": 9}}
    manifest = {
        "kind": kind,
        "project": "p",
        "snapshot_id": None,
        "splits": splits,
        "split_seed": 0,
    }
    header = yaml.safe_load(dataset_card(manifest).split("---")[1])
    declared = header["dataset_info"]["features"]
    features = datasets.Features._from_yaml_list(declared)
    assert features._to_yaml_list() == declared  # datasets' own canonical form
    assert list(features) == {
        ExportKind.SFT: ["messages", "meta"],
        ExportKind.PREFERENCES: ["prompt", "chosen", "rejected", "meta"],
        ExportKind.RANKINGS: [
            "prompt", "completions", "rankings", "consensus", "agreement", "kendall_tau", "meta"
        ],
        ExportKind.PROMPTS: ["prompt", "meta"],
    }[ExportKind(kind)]  # fmt: skip


def test_a_field_first_set_after_the_first_block_still_loads(project, tmp_path):
    """`datasets` reads JSON ~10 MB at a time; a field that is null or [] all through the first
    block and set later must not fail the load (the card's features say its type)."""
    from tests.factories import ModelVersionFactory, UserFactory

    writer = UserFactory()
    model = ModelVersionFactory(name="drafter")
    prompt = start(project, "Q")
    say(prompt, "b" * 2000, user=writer)  # no label, no draft: the bare row
    plain = say(prompt, "p", user=writer)
    draft = say(prompt, "draft", model=model)
    say(prompt, "edited", user=writer, draft=draft)
    from annotations.models import Label

    Label.objects.create(message=plain, name="quality", value=5, annotator=writer)
    out = export(project, "sft", tmp_path / "sft", validation=0)
    path = out.folder / out.manifest["splits"]["train"]["file"]
    rows = path.read_text(encoding="utf-8").splitlines()
    bare = [line for line in rows if '"labels":[]' in line and '"draft_model":null' in line]
    late = [line for line in rows if '"labels":[]' not in line or '"draft_model":null' not in line]
    assert bare and late
    copies = 12 * 2**20 // len(bare[0]) + 1  # more than one block of bare rows first
    path.write_text("\n".join([bare[0]] * copies + late) + "\n", encoding="utf-8")

    loaded = datasets.load_dataset(str(out.folder))
    assert loaded["train"].num_rows == copies + len(late)
    last = loaded["train"][-len(late) :]["meta"]
    assert any(meta["labels"] for meta in last) and any(meta["draft_model"] for meta in last)


def test_rows_with_null_empty_and_set_fields_load(project, tmp_path):
    """Every kind, on data whose optional fields are null in some rows and set in others (a
    reply's model, a label, a flag, a rewrite), loads; pyarrow must never see a list that
    starts with null (apache/arrow#51305)."""
    from tests.factories import VARIED_RUNS, varied_data

    varied_data(project)
    for kind, choice_sets in VARIED_RUNS.items():
        for i, choices in enumerate(choice_sets):
            out = export(project, kind, tmp_path / f"{kind}{i}", validation=0, **choices)
            loaded = load(out.folder, out.manifest)
            assert loaded["train"].to_list() == out.rows["train"], kind
