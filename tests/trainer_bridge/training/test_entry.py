"""The entry point end to end, as a subprocess on the CPU with the tiny model: each stage trains,
reports its events and saves a model that loads; bad input ends with a failed event."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tests.trainer_bridge.training.conftest import OVERLONG_ROWS
from tests.trainer_bridge.training.entry_runs import (
    ENTRY_MODULE,
    ROOT,
    read_events,
    run_entry,
    subprocess_environment,
)
from tests.trainer_bridge.training.preference_signal import (
    PPO_PRESET,
    RM_PRESET,
    is_upbeat,
    prompt_rows,
    write_jsonl,
)
from trainer_bridge.tiny_model import (
    END_OF_TURN_TOKEN,
    EOS_TOKEN,
    build_tiny_tokenizer,
    tiny_dialogues,
)
from trainer_bridge.training.checkpoints import RECORD_FILE, load_scorer, read_record
from trainer_bridge.training.checks import reward_model_problem, tokenizer_mismatch
from trainer_bridge.training.reward_eval import sample_replies, score_sequences
from trainer_bridge.training.tokens import Renderer


def _assert_event_shapes(run) -> None:
    """Every run's file: `started` first, metrics with integer steps, one `finished` last."""
    assert run.events[0]["type"] == "started"
    assert run.events[-1]["type"] == "finished"
    assert len(run.of_type("finished")) == 1
    steps = []
    for event in run.of_type("metrics"):
        assert set(event) == {"type", "step", "values"}
        assert isinstance(event["step"], int) and event["values"]
        assert all(isinstance(v, float) for v in event["values"].values()), event
        steps.append(event["step"])
    assert steps == sorted(steps)


def _assert_clean_output(output: Path, *, stage: str) -> dict:
    record = read_record(output)
    assert record is not None
    assert record["stage"] == stage
    assert record["padding_side"] == "left"
    assert record["end_of_turn_token"] == END_OF_TURN_TOKEN
    assert json.loads((output / "tokenizer_config.json").read_text())["padding_side"] == "left"
    assert not (output / ".trainer").exists()
    assert not (output / "training_args.bin").exists()
    return record


# --- reward model -----------------------------------------------------------------------------


def test_reward_model_learns_the_signal_and_counts_the_rows_it_drops(
    trained_reward_model, signal_files, tiny_model_paths
):
    run = trained_reward_model
    assert run.returncode == 0, run.stderr[-4000:]
    _assert_event_shapes(run)
    assert run.events[0] == {
        "type": "started",
        "stage": "rm",
        "rows": {
            "train": signal_files.preference_train_rows - OVERLONG_ROWS,
            "validation": signal_files.preference_validation_rows,
            "dropped_too_long": OVERLONG_ROWS,
        },
    }
    accuracy = run.metrics("accuracy")
    assert accuracy[0][0] == 0 and accuracy[0][1] < 0.75  # evaluated before training
    assert accuracy[-1][1] >= 0.9
    assert run.metrics("loss") and run.metrics("train_accuracy")

    finished = run.finished
    assert finished["state"] == "succeeded"
    assert finished["output"] == str(run.output)
    summary = finished["summary"]
    assert summary["validation_accuracy"] >= 0.9
    assert summary["validation_pairs"] == signal_files.preference_validation_rows
    assert summary["dropped_too_long"] == {"train": OVERLONG_ROWS, "validation": 0}

    record = _assert_clean_output(run.output, stage="rm")
    assert record["hyperparameters"]["learning_rate"] == RM_PRESET["learning_rate"]
    assert record["summary"]["validation_accuracy"] == summary["validation_accuracy"]
    model = AutoModelForSequenceClassification.from_pretrained(run.output)
    assert model.config.num_labels == 1
    assert reward_model_problem(str(run.output)) is None
    assert tokenizer_mismatch(str(tiny_model_paths.policy), str(run.output)) is None


# --- PPO --------------------------------------------------------------------------------------


def _fresh_replies(policy_dir: Path, renderer: Renderer, prompts, reward_model):
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    samples = sample_replies(
        policy,
        renderer,
        prompts,
        samples_per_prompt=4,
        max_new_tokens=PPO_PRESET["response_length"],
        temperature=1.0,
        seed=123,
    )
    scores = score_sequences(reward_model, [p + r for p, r in samples])
    texts = [renderer.tokenizer.decode(r, skip_special_tokens=True) for _, r in samples]
    return sum(scores) / len(scores), sum(map(is_upbeat, texts)) / len(texts)


def test_ppo_raises_the_reward_of_fresh_replies_to_held_out_prompts(
    trained_policy, reward_model_dir, tiny_model_paths, signal_files
):
    run = trained_policy
    assert run.returncode == 0, run.stderr[-4000:]
    _assert_event_shapes(run)
    assert run.events[0]["rows"] == {"train": 200, "validation": 32, "dropped_too_long": 0}
    steps = list(range(1, PPO_PRESET["steps"] + 1))
    assert [step for step, _ in run.metrics("reward")] == steps
    assert [step for step, _ in run.metrics("kl")] == steps
    summary = run.finished["summary"]
    assert summary["held_out_reward_after"] > summary["held_out_reward_before"]

    # Measured here, not taken from the run: replies sampled from both policies for prompts
    # neither the training nor the validation file had, scored by the reward model.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_paths.policy)
    renderer = Renderer(tokenizer)
    reward_model = load_scorer(reward_model_dir, tokenizer)
    trained = {row["prompt"][-1]["content"] for row in prompt_rows(232, seed=0)}
    held_out = [row["prompt"] for row in prompt_rows(40, seed=7)]
    held_out = [p for p in held_out if p[-1]["content"] not in trained][:24]
    assert len(held_out) >= 16
    before, upbeat_before = _fresh_replies(
        tiny_model_paths.policy, renderer, held_out, reward_model
    )
    after, upbeat_after = _fresh_replies(run.output, renderer, held_out, reward_model)
    assert after > before + 0.5, (before, after)
    assert upbeat_after > upbeat_before, (upbeat_before, upbeat_after)

    record = _assert_clean_output(run.output, stage="ppo")
    assert record["reward_model"] == str(reward_model_dir)
    # TRL points the policy's generation at the stop token alone; the saved policy keeps both
    # of its end tokens, as generation workers need them.
    saved = json.loads((run.output / "tokenizer_config.json").read_text())
    assert saved["eos_token"] == EOS_TOKEN  # the trainer's copy ended sequences at <|end|>
    generation = json.loads((run.output / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [
        tokenizer.convert_tokens_to_ids(END_OF_TURN_TOKEN),
        tokenizer.convert_tokens_to_ids(EOS_TOKEN),
    ]


# --- SFT under accelerate launch, reporting to the API ---------------------------------------


def test_sft_under_accelerate_launch_learns_and_reports_every_event(
    tmp_path, tiny_model_paths, signal_files, events_server
):
    launcher = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--num_processes=1",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "--cpu",
        "-m",
    ]
    run = run_entry(
        tmp_path,
        stage="sft",
        train=signal_files.sft_train,
        validation=signal_files.sft_validation,
        base=tiny_model_paths.policy,
        hyperparameters={"learning_rate": 1e-3, "batch_size": 8, "max_length": 96, "epochs": 2},
        launcher=launcher,
        extra=["--report-url", events_server.url],
        env={"PARLEY_RUN_TOKEN": "sft-run-token"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    _assert_event_shapes(run)
    assert run.events[0]["rows"] == {"train": 48, "validation": 16, "dropped_too_long": 0}
    # The demonstrations all open upbeat, which the tiny policy does a third of the time.
    validation_loss = run.metrics("validation_loss")
    assert validation_loss[0][0] == 0
    assert validation_loss[-1][1] < validation_loss[0][1] - 0.05
    assert run.finished["summary"]["validation_loss"] == validation_loss[-1][1]
    _assert_clean_output(run.output, stage="sft")
    model = AutoModelForCausalLM.from_pretrained(run.output)
    assert (
        model.config.vocab_size
        == AutoModelForCausalLM.from_pretrained(tiny_model_paths.policy).config.vocab_size
    )
    # The API got the same events as the file, in order, with the run's token.
    assert events_server.posted_events() == run.events
    assert {r["authorization"] for r in events_server.requests} == {"RunToken sft-run-token"}


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected", "status"),
    [
        ("missing base", "the base model directory {tmp}/nowhere does not exist", 1),
        ("empty file", "the training file empty.jsonl has no rows", 1),
        ("wrong kind", "prompts-train.jsonl line 1: expected 'prompt', 'chosen' and 'rejected'", 1),
        ("bad hyperparameter", "learning_rate: must be a number greater than 0", 1),
        ("unknown hyperparameter", "lr: is not a hyper-parameter of the rm stage", 1),
        ("no reward model for ppo", "bad arguments: the ppo stage needs --reward-model", 2),
    ],
)
def test_a_run_that_cannot_start_ends_with_a_failed_event(
    tmp_path, tiny_model_paths, signal_files, case, expected, status
):
    kwargs = {
        "stage": "rm",
        "train": signal_files.preferences_train,
        "base": tiny_model_paths.policy,
    }
    if case == "missing base":
        kwargs["base"] = tmp_path / "nowhere"
    elif case == "empty file":
        kwargs["train"] = write_jsonl(tmp_path / "empty.jsonl", [])
    elif case == "wrong kind":
        kwargs["train"] = signal_files.prompts_train
    elif case == "bad hyperparameter":
        kwargs["hyperparameters"] = {"learning_rate": 0}
    elif case == "unknown hyperparameter":
        kwargs["hyperparameters"] = {"lr": 0.1}
    elif case == "no reward model for ppo":
        kwargs.update(stage="ppo", train=signal_files.prompts_train)
    started = time.monotonic()
    run = run_entry(tmp_path / "run", **kwargs)
    assert run.returncode == status, run.stderr
    assert run.events == [{"type": "finished", "state": "failed", "error": run.events[0]["error"]}]
    assert run.events[0]["error"].startswith(expected.format(tmp=tmp_path))
    assert not run.output.exists()
    assert time.monotonic() - started < 20  # refused before anything heavy is loaded


def test_ppo_refuses_a_reward_model_with_another_tokenizer(
    tmp_path, tiny_model_paths, signal_files
):
    reward = tmp_path / "reward"
    shutil.copytree(tiny_model_paths.reward, reward)
    build_tiny_tokenizer(tiny_dialogues(seed=1)).save_pretrained(reward)
    run = run_entry(
        tmp_path / "run",
        stage="ppo",
        train=signal_files.prompts_train,
        base=tiny_model_paths.policy,
        reward_model=reward,
        hyperparameters={"max_length": 128, "response_length": 16},
    )
    assert run.returncode == 1
    assert run.of_type("started") == []
    error = run.finished["error"]
    assert error.startswith("the reward model's tokenizer differs from the policy's: vocabularies")


def test_a_run_whose_rows_are_all_too_long_fails_saying_so(
    tmp_path, tiny_model_paths, signal_files
):
    run = run_entry(
        tmp_path,
        stage="rm",
        train=signal_files.preferences_train,
        base=tiny_model_paths.policy,
        hyperparameters={"max_length": 16},
    )
    assert run.returncode == 1
    assert run.of_type("started") == []
    assert run.finished["error"] == (
        f"every training row ({signal_files.preference_train_rows}) is longer than "
        "max_length (16 tokens); raise max_length"
    )


def test_a_run_stopped_by_sigterm_ends_with_a_failed_event(
    tmp_path, tiny_model_paths, signal_files
):
    events = tmp_path / "events.jsonl"
    command = [
        sys.executable,
        "-m",
        ENTRY_MODULE,
        "--stage=rm",
        f"--train={signal_files.preferences_train}",
        f"--base={tiny_model_paths.policy}",
        f"--output={tmp_path / 'output'}",
        f"--events={events}",
        '--hyperparameters={"epochs": 500, "max_length": 128, "logging_steps": 1}',
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=subprocess_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not [e for e in read_events(events) if e["type"] == "metrics"]:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no training step within a minute"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    last = read_events(events)[-1]
    assert last == {"type": "finished", "state": "failed", "error": "stopped by SIGTERM"}
    assert not (tmp_path / "output" / RECORD_FILE).exists()
