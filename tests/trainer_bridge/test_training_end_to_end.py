"""The loop closed on the CPU with the tiny model, through a real Celery worker and PostgreSQL:
rankings with a learnable signal -> preferences and prompts exports -> a reward model (>= 0.9
validation accuracy, then scored against fresh rankings per round) -> a few dozen PPO steps that
raise the policy's reward on held-out prompts -> the new policy registered, made the project's
candidate model with one click, and serving the next generation request."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from annotations.models import ModelVersion
from tests.conftest import wait_for
from tests.factories import ModelVersionFactory, trainers
from tests.trainer_bridge.conftest import add_prompts, add_signal_sets
from tests.trainer_bridge.training.preference_signal import PPO_PRESET, RM_PRESET, ranking_sets
from trainer_bridge.loading import resolve_source
from trainer_bridge.models import GenerationRequest, RewardEvaluation, TrainingRun


def _wait_run(api, pk: int, timeout: float) -> dict:
    def finished():
        body = api.get(f"/api/v1/training-runs/{pk}/").json()
        return body if body["state"] in ("succeeded", "failed", "cancelled") else None

    body = wait_for(finished, timeout=timeout, interval=1.0, message=f"run {pk} never finished")
    assert body["state"] == "succeeded", (body["error"], body["log_tail"][-3000:])
    return body


def _export(api, kind: str, choices: dict) -> dict:
    response = api.post(
        "/api/v1/projects/alpha/exports/", {"kind": kind, "choices": choices}, format="json"
    )
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]

    def done():
        body = api.get(f"/api/v1/exports/{pk}/").json()
        return body if body["state"] in ("done", "failed") else None

    body = wait_for(done, timeout=120, interval=0.5, message=f"export {pk} never finished")
    assert body["state"] == "done", body["error"]
    return body


def _mean_held_out_reward(policy_path: str, reward_path: str, prompts: list[list[dict]]) -> float:
    """The reward model's mean score of replies the policy samples for `prompts` (seeded)."""
    from trainer_bridge.training.checkpoints import load_causal_lm, load_scorer, load_tokenizer
    from trainer_bridge.training.reward_eval import policy_rewards
    from trainer_bridge.training.tokens import Renderer

    tokenizer, _ = load_tokenizer(reward_path)
    renderer = Renderer(tokenizer)
    policy = load_causal_lm(policy_path, tokenizer)
    reward = load_scorer(reward_path, tokenizer)
    scores = policy_rewards(
        policy, reward, renderer, prompts,
        samples_per_prompt=4, max_new_tokens=PPO_PRESET["response_length"],
        temperature=PPO_PRESET["temperature"], seed=7,
    )  # fmt: skip
    return statistics.fmean(scores)


@pytest.mark.worker
def test_rankings_to_reward_model_to_ppo_to_the_next_generation(
    start_celery_worker, api_client_for, client, engineer, lead, project, tiny_models,
    media_root, training_dir,
):  # fmt: skip
    started = time.monotonic()
    policy, _ = tiny_models
    rankers = trainers(project, 3, prefix="ranker")
    trained_on = add_signal_sets(project, ranking_sets(120), author=policy, annotators=rankers)
    add_prompts(project, 200)
    # One OpenMP thread per training process: on a shared 2-core machine two threads spin
    # against each other and every other process (PPO ran 20 s alone, minutes under load).
    start_celery_worker(
        MEDIA_ROOT=str(media_root),
        PARLEY_TRAINING_WORK_DIR=str(training_dir),
        PARLEY_TRAINING_CPU_THREADS="1",
    )
    api = api_client_for(engineer)

    preferences = _export(api, "preferences", {"validation": 0.2, "seed": 1})
    prompts = _export(api, "prompts", {"validation": 0.15, "seed": 1})
    assert preferences["manifest"]["splits"]["validation"]["rows"] > 0

    # Trainers go on ranking after the export: a round of the same policy and one of a newer
    # model. No snapshot of the reward model holds these sets.
    newer = ModelVersionFactory(name="tiny-policy-round-2", source=policy.source)
    add_signal_sets(project, ranking_sets(20, seed=11), author=policy, annotators=rankers[:2])
    add_signal_sets(project, ranking_sets(12, seed=12), author=newer, annotators=rankers[:2])

    # 1. The reward model.
    response = api.post(
        "/api/v1/projects/alpha/training-runs/",
        {"stage": "rm", "snapshots": [preferences["id"]], "base_model": "tiny-policy",
         "hyperparameters": RM_PRESET},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    rm_run = _wait_run(api, response.json()["id"], timeout=240)
    assert rm_run["summary"]["validation_accuracy"] >= 0.9, rm_run["summary"]
    assert rm_run["latest_metrics"]["accuracy"]["value"] >= 0.9
    assert rm_run["rows"]["train"] > 0 and rm_run["rows"]["validation"] > 0
    reward = ModelVersion.objects.get(name=rm_run["result_model"]["name"])
    assert reward.kind == "reward" and reward.parent == policy
    assert reward.training_run.snapshots.get().pk == preferences["id"]

    # Scored against the fresh rankings, per round, as soon as it is registered.
    evaluations = RewardEvaluation.objects.filter(reward_model=reward, state__in=["done", "failed"])
    evaluation = wait_for(
        evaluations.first, timeout=120, interval=0.5, message="the RM was never evaluated"
    )
    assert evaluation.state == "done", evaluation.error
    assert evaluation.sets == 32 and evaluation.sets_left_out == len(trained_on)
    assert {r["round"]: r["sets"] for r in evaluation.rounds} == {
        "tiny-policy": 20, "tiny-policy-round-2": 12,
    }  # fmt: skip
    assert evaluation.accuracy >= 0.85, evaluation.rounds
    page = api.get(f"/api/v1/training-runs/{rm_run['id']}/").json()
    assert page["evaluation"]["sets"] == 32

    # 2. PPO against it.
    response = api.post(
        "/api/v1/projects/alpha/training-runs/",
        {"stage": "ppo", "snapshots": [prompts["id"]], "base_model": "tiny-policy",
         "reward_model": reward.name, "hyperparameters": PPO_PRESET},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    ppo_run = _wait_run(api, response.json()["id"], timeout=300)
    summary = ppo_run["summary"]
    assert summary["held_out_reward_after"] > summary["held_out_reward_before"], summary
    assert ppo_run["latest_metrics"]["kl"]["step"] >= 1 and "reward" in ppo_run["latest_metrics"]
    tuned = ModelVersion.objects.get(name=ppo_run["result_model"]["name"])
    assert tuned.kind == "policy" and tuned.parent == policy
    run = TrainingRun.objects.get(pk=ppo_run["id"])
    assert run.result_model == tuned and run.reward_model == reward

    # The stored model, loaded as the workers load it, scores higher on held-out prompts.
    held_out = [
        json.loads(line)["prompt"]
        for line in api.get(prompts["downloads"]["validation"]).getvalue().decode().splitlines()
    ][:12]
    reward_path = str(resolve_source(reward.source))
    before = _mean_held_out_reward(str(resolve_source(policy.source)), reward_path, held_out)
    after = _mean_held_out_reward(str(resolve_source(tuned.source)), reward_path, held_out)
    assert after > before, (before, after)

    # 3. One click of a lead makes it the candidate model; the next request is served by it.
    client.force_login(lead)
    response = client.post(f"/p/alpha/training/{ppo_run['id']}/use", {"use": "candidate"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert list(project.candidate_models.all()) == [tuned]

    response = api.post(
        "/api/v1/projects/alpha/generations/",
        {"purpose": "candidates", "n": 2, "params": {"max_new_tokens": 16, "seed": 3},
         "messages": held_out[0]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    served = GenerationRequest.objects.filter(
        pk=response.json()["id"], state__in=["done", "failed"]
    )
    generation = wait_for(served.first, timeout=120, interval=0.5, message="never served")
    assert generation.state == "done", generation.error
    assert generation.model_version == tuned
    outputs = list(generation.outputs.all())
    assert len(outputs) == 2 and all(o.message.author_model == tuned for o in outputs)
    print(f"end to end: {time.monotonic() - started:.0f} s")
