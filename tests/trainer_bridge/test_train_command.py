"""`manage.py train`: a run queued from the command line; bad input refused naming the option."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from trainer_bridge.management.commands.train import parse_setting
from trainer_bridge.models import TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def preferences(signal_data, snapshot_of):
    signal_data(sets=3, prompts=2)
    return snapshot_of("preferences")


def test_parse_setting_reads_json_values_and_falls_back_to_text():
    assert parse_setting("learning_rate=1e-5") == ("learning_rate", 1e-5)
    assert parse_setting("epochs=3") == ("epochs", 3)
    assert parse_setting("gradient_checkpointing=true") == ("gradient_checkpointing", True)
    assert parse_setting("kl_estimator=k3") == ("kl_estimator", "k3")
    with pytest.raises(CommandError, match="key=value"):
        parse_setting("epochs")


def test_train_queues_a_run_with_the_settings(preferences, capsys, mocker):
    mocker.patch("trainer_bridge.tasks.train_run.delay")
    call_command(
        "train", "--project", "alpha", "--stage", "rm", "--snapshot", str(preferences.pk),
        "--base", "tiny-policy", "--set", "learning_rate=1e-3", "--set", "epochs=2",
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert run.state == "queued" and run.started_by is None and run.backend == "local"
    assert run.hyperparameters["learning_rate"] == 1e-3 and run.hyperparameters["epochs"] == 2
    out = capsys.readouterr().out
    assert f"Training run {run.pk} (rm, local) is queued" in out and "epochs=2" in out
    assert "Queued by the command line" in run.log_tail


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "learning_rate=5"], "--set learning_rate: must be a number greater than 0"),
        (["--set", "warp=9"], "--set warp: is not a hyper-parameter of the rm stage"),
        (["--reward-model", "tiny-reward"], "--reward-model: Only the ppo stage"),
        (["--base", "nobody"], "--base: nobody is not a model of this project."),
        (["--user", "tina"], "does not allow 'train'"),
    ],
)
def test_bad_input_exits_naming_the_option(args, words, preferences, trainer, mocker):
    delay = mocker.patch("trainer_bridge.tasks.train_run.delay")
    base = ["train", "--project", "alpha", "--stage", "rm", "--snapshot", str(preferences.pk)]
    if "--base" not in args:
        base += ["--base", "tiny-policy"]
    with pytest.raises(CommandError) as raised:
        call_command(*base, *args)
    assert words in str(raised.value)
    assert not TrainingRun.objects.exists()
    delay.assert_not_called()


def test_a_wrong_snapshot_and_an_unknown_project(preferences, mocker):
    mocker.patch("trainer_bridge.tasks.train_run.delay")
    with pytest.raises(CommandError, match="--snapshot: Snapshot .* is a preferences export"):
        call_command(
            "train", "--project", "alpha", "--stage", "ppo", "--snapshot", str(preferences.pk),
            "--base", "tiny-policy", "--reward-model", "tiny-reward",
        )  # fmt: skip
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command(
            "train", "--project", "nope", "--stage", "rm", "--snapshot", "1", "--base", "x"
        )


def test_wait_follows_the_run_and_exits_non_zero_unless_it_succeeds(preferences, capsys, mocker):
    """--wait polls until the run ends; a worker (not here) would move it along, which the
    poll's sleep does in this test."""
    mocker.patch("trainer_bridge.tasks.train_run.delay")

    def worker_fails_it(seconds):
        run = TrainingRun.objects.get()
        if run.state == "queued":
            TrainingRun.objects.filter(pk=run.pk).update(state="running", attempts=1)
        else:
            TrainingRun.objects.filter(pk=run.pk).update(
                state="failed", error="exit status 1", log_tail="Traceback: boom\n"
            )

    mocker.patch("trainer_bridge.management.commands.train.time.sleep", worker_fails_it)
    with pytest.raises(CommandError) as raised:
        call_command(
            "train", "--project", "alpha", "--stage", "rm", "--snapshot", str(preferences.pk),
            "--base", "tiny-policy", "--wait", "--poll-seconds", "0",
        )  # fmt: skip
    message = str(raised.value)
    assert "failed: exit status 1" in message and "Traceback: boom" in message
    out = capsys.readouterr().out
    assert "queued" in out and "running" in out
