"""Export rows are checked for the stage that reads them; a bad row names its file, line, field."""

from __future__ import annotations

import gzip
import json

import pytest

from trainer_bridge.training.data import (
    DataError,
    Demonstration,
    Preference,
    Prompt,
    read_examples,
)

USER = {"role": "user", "content": "How do I fold a scarf?"}
REPLY = {"role": "assistant", "content": "Sure. Fold it twice."}
OTHER = {"role": "assistant", "content": "Maybe."}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_each_stage_reads_its_export_kind(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    sft = _write(tmp_path / "sft.jsonl", [{"messages": [system, USER, REPLY], "meta": {}}])
    assert read_examples("sft", sft, split="training") == [
        Demonstration(prompt=[system, USER], reply=REPLY["content"])
    ]
    preferences = _write(
        tmp_path / "p.jsonl",
        [{"prompt": [USER], "chosen": [REPLY], "rejected": [OTHER], "meta": {"margin": 1}}],
    )
    assert read_examples("rm", preferences, split="training") == [
        Preference(prompt=[USER], chosen=REPLY["content"], rejected=OTHER["content"])
    ]
    prompts = _write(tmp_path / "prompts.jsonl", ["", {"prompt": [USER]}, "  "])
    assert read_examples("ppo", prompts, split="training") == [Prompt(prompt=[USER])]


def test_gzipped_exports_are_read(tmp_path):
    path = tmp_path / "prompts.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"prompt": [USER]}) + "\n")
    assert read_examples("ppo", path, split="training") == [Prompt(prompt=[USER])]


@pytest.mark.parametrize(
    ("stage", "row", "expected"),
    [
        # A snapshot of the wrong kind for the stage.
        ("rm", {"prompt": [USER]}, "line 2: expected 'prompt', 'chosen' and 'rejected'"),
        ("ppo", {"messages": [USER, REPLY]}, "line 2: expected 'prompt' (a prompts export row)"),
        ("sft", {"prompt": [USER]}, "line 2: field 'messages' must be a non-empty list"),
        # Broken rows.
        ("sft", {"messages": [USER]}, "must be a conversation that ends with an assistant turn"),
        ("rm", {"prompt": [USER], "chosen": [REPLY, OTHER], "rejected": [OTHER]}, "'chosen'"),
        (
            "rm",
            {"prompt": [USER, REPLY], "chosen": [REPLY], "rejected": [OTHER]},
            "end with a user",
        ),
        ("ppo", {"prompt": [{"role": "robot", "content": "x"}]}, "'prompt[0]'.role must be one of"),
        ("ppo", {"prompt": [{"role": "user", "content": 3}]}, "'prompt[0]'.content must be a str"),
    ],
)
def test_a_bad_row_is_refused_by_line_and_field(tmp_path, stage, row, expected):
    good = {
        "sft": {"messages": [USER, REPLY]},
        "rm": {"prompt": [USER], "chosen": [REPLY], "rejected": [OTHER]},
        "ppo": {"prompt": [USER]},
    }[stage]
    path = _write(tmp_path / "rows.jsonl", [good, row])
    with pytest.raises(DataError) as caught:
        read_examples(stage, path, split="training")
    assert str(caught.value).startswith("rows.jsonl line 2")
    assert expected in str(caught.value)


def test_empty_missing_and_non_json_files_are_refused(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", ["", " "])
    with pytest.raises(DataError, match="the training file empty.jsonl has no rows: a preferences"):
        read_examples("rm", empty, split="training")
    with pytest.raises(DataError, match="no such file"):
        read_examples("rm", tmp_path / "missing.jsonl", split="training")
    broken = _write(tmp_path / "broken.jsonl", [{"prompt": [USER]}, "{not json"])
    with pytest.raises(DataError, match="broken.jsonl line 2: not JSON"):
        read_examples("ppo", broken, split="training")
    listed = _write(tmp_path / "listed.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        read_examples("ppo", listed, split="training")
