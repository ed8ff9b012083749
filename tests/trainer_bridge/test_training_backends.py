"""The training backends with a real Celery worker and the real entry point: the command backend
running a job that reports through the API with its token, a worker killed mid-run (its training
processes end with it; the watchdog queues the run again), cancelling a local run, and a job
that fails to start."""

from __future__ import annotations

import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.utils import timezone

from tests.conftest import ROOT, wait_for
from tests.trainer_bridge.conftest import add_demonstrations
from tests.trainer_bridge.training.preference_signal import RM_PRESET
from trainer_bridge.loading import load_policy
from trainer_bridge.models import TrainingMetric, TrainingRun
from trainer_bridge.tasks import training_run_send, training_store_send
from trainer_bridge.training_watchdog import training_runs_sweep

ENTRY_TEMPLATE = (
    f"sh {ROOT}/deploy/training/entry.sh {{stage}} {{train_path}} {{validation_path}} "
    "{base_path} {reward_model_path} {output_dir} {hyperparameters_json} {events_path} "
    "{report_url}"
)
SFT_QUICK = {
    "learning_rate": 1e-3, "epochs": 1, "batch_size": 8, "max_length": 128, "logging_steps": 1,
}  # fmt: skip


def _run(pk: int) -> TrainingRun:
    return TrainingRun.objects.select_related("result_model").get(pk=pk)


def _training_processes(run: TrainingRun) -> list[psutil.Process]:
    """Processes whose command line names the run's folder (the launcher and the trainer)."""
    marker = f"run-{run.pk}{'/'}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if marker in cmdline and "trainer_bridge.training" in cmdline:
            found.append(process)
    return found


def _training_settings(settings, **values) -> None:
    settings.PARLEY = {**settings.PARLEY, "TRAINING": {**settings.PARLEY["TRAINING"], **values}}


@pytest.fixture
def worker_env(media_root, training_dir) -> dict[str, str]:
    return {
        "MEDIA_ROOT": str(media_root),
        "PARLEY_TRAINING_WORK_DIR": str(training_dir),
        "PARLEY_PYTHON": sys.executable,
        "PARLEY_TRAINING_CPU_THREADS": "1",
        "OMP_NUM_THREADS": "1",  # the command backend's job, started by the template
    }


@pytest.mark.worker
def test_the_command_backend_runs_a_job_that_reports_with_its_token(
    start_celery_worker, live_server, api_client_for, engineer, project, tiny_models,
    snapshot_of, worker_env, settings,
):  # fmt: skip
    """SFT through a command template that runs the entry point here: every event reaches the
    run through the report endpoint, and the model is stored and registered."""
    add_demonstrations(project, 40, writer=engineer)
    sft = snapshot_of("sft", validation=0.1)
    _training_settings(settings, COMMAND_TEMPLATE=ENTRY_TEMPLATE, REPORT_BASE_URL=live_server.url)
    start_celery_worker(
        **worker_env,
        PARLEY_TRAINING_COMMAND=ENTRY_TEMPLATE,
        PARLEY_TRAINING_REPORT_BASE_URL=live_server.url,
    )
    response = api_client_for(engineer).post(
        "/api/v1/projects/alpha/training-runs/",
        {
            "stage": "sft", "snapshots": [sft.pk], "base_model": "tiny-policy",
            "backend": "command", "hyperparameters": SFT_QUICK,
        },
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]

    wait_for(lambda: _run(pk).is_finished, timeout=240, interval=0.5, message="never finished")
    run = _run(pk)
    assert run.state == "succeeded", (run.error, run.log_tail)
    assert run.backend == "command" and run.token_hash  # the job reported with its token
    assert run.rows["train"] > 0 and "Training started" in run.log_tail
    metrics = list(TrainingMetric.objects.filter(run=run).values_list("step", "values"))
    assert len(metrics) >= 3 and any("loss" in values for _, values in metrics)
    model = run.result_model
    assert model.name == f"alpha-sft-run-{pk}" and model.kind == "policy"
    assert model.parent.name == "tiny-policy" and model.source.startswith("storage:training/")
    tokenizer, policy = load_policy(model.source)
    assert policy.config.vocab_size == tokenizer.vocab_size or policy.config.vocab_size > 0
    assert tokenizer.pad_token != tokenizer.eos_token


@pytest.mark.worker
def test_a_command_that_fails_to_submit_fails_the_run_with_its_output(
    start_celery_worker, live_server, api_client_for, engineer, project, tiny_models,
    signal_data, snapshot_of, worker_env, settings,
):  # fmt: skip
    template = "echo 'sbatch: error: invalid partition {stage}' >&2; exit 3"
    signal_data(sets=3, prompts=2)
    preferences = snapshot_of("preferences")
    _training_settings(settings, COMMAND_TEMPLATE=template, REPORT_BASE_URL=live_server.url)
    start_celery_worker(
        **worker_env,
        PARLEY_TRAINING_COMMAND=template,
        PARLEY_TRAINING_REPORT_BASE_URL=live_server.url,
    )
    response = api_client_for(engineer).post(
        "/api/v1/projects/alpha/training-runs/",
        {"stage": "rm", "snapshots": [preferences.pk], "base_model": "tiny-policy",
         "backend": "command"},
        format="json",
    )  # fmt: skip
    pk = response.json()["id"]
    wait_for(lambda: _run(pk).is_finished, timeout=60, interval=0.5, message="never finished")
    run = _run(pk)
    assert run.state == "failed" and run.error == "The command exited with status 3."
    assert "sbatch: error: invalid partition rm" in run.log_tail


@pytest.mark.worker
def test_a_killed_worker_takes_its_training_along_and_the_run_is_queued_again_then_cancelled(
    start_celery_worker, api_client_for, engineer, project, tiny_models, signal_data,
    snapshot_of, worker_env, settings,
):  # fmt: skip
    signal_data(sets=40, prompts=2)
    preferences = snapshot_of("preferences", validation=0.2)
    first = start_celery_worker("w1", **worker_env)
    # Many epochs: the run is still training when the worker dies.
    slow = {**RM_PRESET, "epochs": 200, "logging_steps": 1}
    response = api_client_for(engineer).post(
        "/api/v1/projects/alpha/training-runs/",
        {"stage": "rm", "snapshots": [preferences.pk], "base_model": "tiny-policy",
         "hyperparameters": slow},
        format="json",
    )  # fmt: skip
    pk = response.json()["id"]
    wait_for(
        lambda: TrainingMetric.objects.filter(run_id=pk).exists(),
        timeout=120, interval=0.5, message="the run never reported a step",
    )  # fmt: skip
    run = _run(pk)
    assert run.state == "running" and run.attempts == 1 and _training_processes(run)

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # The guard sees its worker gone and ends the training's process group.
    wait_for(lambda: not _training_processes(run), timeout=30, message="training outlived it")
    beat_before = _run(pk).heartbeat_at
    time.sleep(2)
    assert _run(pk).heartbeat_at == beat_before and _run(pk).state == "running"

    # The beat task's sweep, run here a little after the heartbeat went stale.
    later = timezone.now() + timedelta(seconds=settings.PARLEY["TRAINING"]["STALE_SECONDS"] + 1)
    swept = training_runs_sweep(
        send_run=training_run_send, send_store=training_store_send, now=later
    )
    assert swept.requeued == 1
    assert "stopped answering; queued again" in _run(pk).log_tail

    start_celery_worker("w2", **worker_env)

    def second_attempt_trains() -> bool:
        now = _run(pk)
        return now.attempts == 2 and now.state == "running" and bool(_training_processes(now))

    wait_for(second_attempt_trains, timeout=120, interval=0.5, message="never taken again")
    second = _run(pk)
    assert second.worker != run.worker

    response = api_client_for(engineer).post(f"/api/v1/training-runs/{pk}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    wait_for(lambda: not _training_processes(second), timeout=30, message="cancel left it running")
    cancelled = _run(pk)
    assert cancelled.state == "cancelled" and cancelled.result_model is None
    work = Path(worker_env["PARLEY_TRAINING_WORK_DIR"]) / f"run-{pk}"
    assert (work / "attempt-1" / "events.jsonl").is_file()
    assert (work / "attempt-2" / "log.txt").is_file()


def test_the_guard_ends_the_whole_group_when_its_stdin_closes(tmp_path):
    """What happens when the worker dies: the kernel closes the pipe, the guard ends the group
    (here a shell and the sleep it started), and exits with a failure."""
    import subprocess

    marker = tmp_path / "child.pid"
    guard = subprocess.Popen(
        [sys.executable, "-m", "trainer_bridge.training_guard", "--", "sh", "-c",
         f"sleep 300 & echo $! > {marker}; wait"],
        stdin=subprocess.PIPE, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    wait_for(lambda: marker.exists() and marker.read_text().strip(), timeout=20)
    child = psutil.Process(int(marker.read_text()))
    assert child.is_running()
    guard.stdin.close()
    assert guard.wait(timeout=20) != 0
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=20)


def test_the_shipped_job_templates_format_with_every_field(tmp_path):
    """The SLURM line of the sample environment and the Kubernetes submitter take every field
    the command backend gives, quoted; the Job manifest carries them and the token's Secret."""
    import json
    import os
    import subprocess

    import yaml

    from trainer_bridge.training_backends import command_template_problem

    env_file = (ROOT / "deploy" / "parley.env.example").read_text()
    slurm = next(
        line.split("=", 1)[1]
        for line in env_file.splitlines()
        if line.startswith("#PARLEY_TRAINING_COMMAND=")
    )
    assert command_template_problem(slurm) is None
    assert command_template_problem("sbatch {nope}") is not None

    report = "https://parley.example.org/api/v1/training-runs/7/report/"
    args = ["7", "ppo", "/w/train.jsonl", "", "/m/base", "/m/rm", "/w/out", '{"kl_coef": 0.1}',
            "/w/events.jsonl", report]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "training" / "submit_k8s_job.py"), "--dry-run",
         *args],
        env={**os.environ, "PARLEY_RUN_TOKEN": "secret-token", "PARLEY_TRAINING_IMAGE": "p:1"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    secret_text, job_text = result.stdout.split("\n---\n")
    assert json.loads(secret_text)["stringData"] == {"token": "secret-token"}
    job = yaml.safe_load(job_text)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["metadata"]["name"] == "parley-run-7" and container["image"] == "p:1"
    assert container["args"] == args[1:]
