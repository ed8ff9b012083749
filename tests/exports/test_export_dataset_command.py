"""`manage.py export_dataset`: files and manifest, progress on stderr, errors naming options."""

import gzip
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from exports.services import export_write
from tests.exports.conftest import sha256

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("export_dataset", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_writes_the_dataset_with_progress_on_stderr_and_a_summary_on_stdout(
    oasst_project, tmp_path
):
    out_dir = tmp_path / "prefs"
    stdout, stderr = run(
        "--project", "alpha", "--kind", "preferences", "--out", str(out_dir),
        "--validation", "0.1", "--seed", "3", "--length-balanced",
    )  # fmt: skip

    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["kind"] == "preferences" and manifest["split_seed"] == 3
    assert manifest["choices"]["validation"] == 0.1 and manifest["choices"]["length_balanced"]
    assert manifest["length_bias"]["balanced"] and manifest["rows"] > 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "README.md", "manifest.json", "train.jsonl", "validation.jsonl",
    ]  # fmt: skip
    for name, split in manifest["splits"].items():
        data = (out_dir / split["file"]).read_bytes()
        assert sha256(data) == split["sha256"] and data.count(b"\n") == split["rows"]
        assert f"{name}" in stdout and f"{split['rows']} rows  {split['file']}" in stdout
    assert f"alpha: {manifest['rows']} preferences rows in {out_dir}" in stdout
    assert "Files: train.jsonl, validation.jsonl, manifest.json, README.md" in stdout
    assert "Length bias:" in stdout and "(balanced)" in stdout

    # The bar is redrawn in place and ends with a newline; the last frame says it all.
    assert stderr.startswith("\r[") and stderr.endswith("\n")
    frames = stderr.rstrip("\n").split("\r")[1:]
    assert len(frames) >= 2
    rows = manifest["rows"]
    assert frames[0].startswith(f"[{'-' * 30}] 0/")  # the expected count, before any row
    assert frames[-1].startswith(f"[{'#' * 30}] {rows}/{rows} rows (100%), ")
    assert "rows/s in " in frames[-1]


def test_the_files_match_what_the_service_writes(oasst_project, tmp_path):
    run("--project", "alpha", "--kind", "sft", "--out", str(tmp_path / "cli"), "--seed", "9")
    from exports.choices import ExportChoices

    expected = export_write(
        project=oasst_project, kind="sft", choices=ExportChoices(seed=9), out_dir=tmp_path / "svc"
    )
    cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert cli["splits"] == expected["splits"]


def test_choices_json_is_merged_with_options_that_win(oasst_project, tmp_path):
    out_dir = tmp_path / "out"
    run(
        "--project", "alpha", "--kind", "preferences", "--out", str(out_dir),
        "--choices-json", '{"seed": 1, "pair_strategy": "adjacent", "exclude_flags": ["pii"]}',
        "--seed", "4", "--languages", "en,de", "--gzip",
    )  # fmt: skip
    choices = json.loads((out_dir / "manifest.json").read_text())["choices"]
    assert choices["seed"] == 4 and choices["pair_strategy"] == "adjacent"
    assert choices["exclude_flags"] == ["pii"] and choices["languages"] == ["de", "en"]
    assert choices["gzip"] is True
    rows = gzip.decompress((out_dir / "train.jsonl.gz").read_bytes()).splitlines()
    assert rows and "chosen" in json.loads(rows[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-agreement", "2"], "--min-agreement: Must be between 0 and 1."),
        (["--kind", "sft", "--min-agreement", "0.5"], "--min-agreement: Applies to"),
        (["--since", "soon"], "--since: 'soon' is not a date"),
        (["--languages", "en,no way"], "--languages: 'no way' is not a valid name."),
        (["--exclude-flags", "rude"], "--exclude-flags: Unknown flag 'rude'"),
        (["--exclude-annotators", "ghost"], "--exclude-annotators: 'ghost' is neither"),
        (["--validation", "0.9", "--test", "0.2"], "--test: validation + test"),
        (["--choices-json", "{nope"], "--choices-json: not valid JSON"),
        (["--choices-json", "[1]"], "--choices-json: expected a JSON object"),
        (["--choices-json", '{"colour": "red"}'], "--choices-json: 'colour': Unknown choice"),
        (["--validation", "lots"], "--validation: invalid float value"),
        (["--project", "nope"], "--project: no project with the slug 'nope'"),
        (["--kind", "pairs"], "--kind: invalid choice"),
    ],
)
def test_a_bad_option_is_an_error_naming_it(project, tmp_path, args, message):
    base = {"--project": "alpha", "--kind": "preferences", "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [part for pair in base.items() for part in pair]
    with pytest.raises(CommandError) as raised:
        run(*argv)
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_empty_unless_forced(project, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "test.jsonl").write_text("stale\n")
    args = ["--project", "alpha", "--kind", "prompts", "--out", str(out_dir)]
    with pytest.raises(CommandError, match="not empty.*--force"):
        run(*args)
    assert not (out_dir / "manifest.json").exists()

    run(*args, "--force")
    # An earlier export's files are replaced; anything else stays.
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert not (out_dir / "test.jsonl").exists() and (out_dir / "manifest.json").exists()


def test_an_empty_selection_writes_valid_empty_files(oasst_project, tmp_path):
    out_dir = tmp_path / "empty"
    stdout, stderr = run(
        "--project", "alpha", "--kind", "preferences", "--out", str(out_dir),
        "--since", "2100-01-01", "--test", "0.1",
    )  # fmt: skip
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["rows"] == 0
    assert {name: s["rows"] for name, s in manifest["splits"].items()} == {
        "train": 0, "validation": 0, "test": 0,
    }  # fmt: skip
    for split in manifest["splits"].values():
        assert (out_dir / split["file"]).read_bytes() == b""
        assert split["sha256"] == sha256(b"")
    assert "alpha: 0 preferences rows" in stdout
    assert "0/0 rows (100%)" in stderr and stderr.endswith("\n")
    assert "split: train" in (out_dir / "README.md").read_text()


def test_help_lists_every_choice(capsys):
    with pytest.raises(SystemExit):
        call_command("export_dataset", "--help")
    text = capsys.readouterr().out
    options = ["--min-agreement", "--pair-strategy", "--exclude-sources", "--best-path-only"]
    options += ["--length-balanced", "--validation", "--test", "--seed", "--gzip", "--force"]
    for option in options:
        assert option in text
