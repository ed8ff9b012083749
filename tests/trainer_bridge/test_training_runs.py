"""Starting, listing, reading and cancelling training runs through the REST API, and putting a
run's model to use: who may, and every bad input refused with a 400 naming it before anything is
queued."""

from __future__ import annotations

import json
import shutil

import pytest

from annotations.models import ModelVersion
from tests.factories import ModelVersionFactory, ProjectFactory
from tests.trainer_bridge.conftest import finished_rm_run
from trainer_bridge.models import TrainingMetric, TrainingRun
from trainer_bridge.training.hyperparameters import hyperparameters_from_json
from trainer_bridge.training_runs import training_run_start

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/projects/alpha/training-runs/"


@pytest.fixture
def preferences(signal_data, snapshot_of):
    signal_data(sets=6, prompts=20)
    return snapshot_of("preferences")


def rm_payload(snapshot, **extra):
    return {
        "stage": "rm",
        "snapshots": [snapshot.pk],
        "base_model": "tiny-policy",
        "hyperparameters": {"learning_rate": 1e-3, "epochs": 2},
        **extra,
    }


def test_an_engineer_starts_a_run_and_it_is_sent_after_the_commit(
    api_client_for, engineer, preferences, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(engineer).post(LIST_URL, rm_payload(preferences), format="json")

    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get()
    sent.assert_called_once_with(run.pk)
    body = response.json()
    assert response["Location"].endswith(f"/api/v1/training-runs/{run.pk}/")
    assert body["state"] == "queued" and body["stage"] == "rm" and body["backend"] == "local"
    assert body["snapshots"] == [preferences.pk] and body["base_model"] == "tiny-policy"
    assert body["started_by"] == "eve"
    # Every value is stored, the defaults included, as the stage's own type takes them.
    assert run.hyperparameters == hyperparameters_from_json("rm", run.hyperparameters).to_json()
    assert run.hyperparameters["learning_rate"] == 1e-3 and run.hyperparameters["epochs"] == 2
    assert run.hyperparameters["max_length"] == 1024  # a default
    assert body["page"].endswith(f"/p/alpha/training/{run.pk}/")


def test_leads_may_train_trainers_get_403_and_outsiders_404(
    api_client_for, lead, trainer, outsider, preferences, sent, client
):
    payload = rm_payload(preferences)
    assert api_client_for(lead).post(LIST_URL, payload, format="json").status_code == 201
    assert api_client_for(trainer).post(LIST_URL, payload, format="json").status_code == 403
    assert api_client_for(outsider).post(LIST_URL, payload, format="json").status_code == 404
    assert client.post(LIST_URL, payload, content_type="application/json").status_code == 404
    assert TrainingRun.objects.count() == 1

    run = TrainingRun.objects.get()
    for url in [
        LIST_URL,
        f"/api/v1/training-runs/{run.pk}/",
        f"/api/v1/training-runs/{run.pk}/metrics",
        f"/api/v1/training-runs/{run.pk}/log",
    ]:
        assert api_client_for(lead).get(url).status_code == 200, url
        assert api_client_for(trainer).get(url).status_code == 403, url
        assert api_client_for(outsider).get(url).status_code == 404, url
    for url in [
        f"/api/v1/training-runs/{run.pk}/cancel",
        f"/api/v1/training-runs/{run.pk}/use",
        f"/api/v1/training-runs/{run.pk}/evaluate",
    ]:
        assert api_client_for(trainer).post(url, {}, format="json").status_code == 403, url
        assert api_client_for(outsider).post(url, {}, format="json").status_code == 404, url
    # An id that does not exist answers as another project's run does.
    assert api_client_for(outsider).get("/api/v1/training-runs/999999/").status_code == 404
    assert TrainingRun.objects.get().state == "queued"


def _broken_model(tmp_path, tiny_model_paths):
    broken = tmp_path / "broken-policy"
    shutil.copytree(tiny_model_paths.policy, broken)
    (broken / "config.json").write_text("{not json")
    return broken


def _other_chat_template(tmp_path, tiny_model_paths):
    """The tiny reward model with another chat template: a tokenizer PPO cannot share."""
    other = tmp_path / "other-reward"
    shutil.copytree(tiny_model_paths.reward, other)
    config_path = other / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    )
    config_path.write_text(json.dumps(config))
    template = other / "chat_template.jinja"
    if template.exists():
        template.write_text(config["chat_template"])
    return other


@pytest.mark.parametrize(
    ("case", "field", "words"),
    [
        ("wrong kind", "snapshots", "the rm stage trains on preferences snapshots"),
        ("empty snapshot", "snapshots", "is empty"),
        ("unknown snapshot", "snapshots", "No snapshot 999999 in this project"),
        ("unknown hyperparameter", "hyperparameters.warp_factor", "not a hyper-parameter"),
        ("out of range", "hyperparameters.learning_rate", "greater than 0"),
        ("not an object", "hyperparameters", "Expected a dictionary"),
        ("unknown stage", "stage", "not a valid choice"),
        ("base does not load", "base_model", "does not load"),
        ("base of another project", "base_model", "is not a model of this project"),
        ("reward model for rm", "reward_model", "Only the ppo stage"),
        ("ppo without reward model", "reward_model", "needs one"),
        ("reward model tokenizer differs", "reward_model", "tokenizer"),
        ("reward model that is a policy", "reward_model", "needs a reward model"),
        ("command backend unset", "backend", "PARLEY_TRAINING_COMMAND"),
    ],
)
def test_bad_input_is_refused_with_a_400_naming_it_and_nothing_is_queued(
    case, field, words, api_client_for, engineer, project, signal_data, snapshot_of, sent,
    tmp_path, tiny_model_paths, tiny_models, settings,
):  # fmt: skip
    signal_data(sets=4, prompts=20)
    preferences = snapshot_of("preferences")
    prompts = snapshot_of("prompts")
    policy, reward = tiny_models
    payload = rm_payload(preferences)
    if case == "wrong kind":
        payload["snapshots"] = [prompts.pk]
    elif case == "empty snapshot":
        payload["snapshots"] = [snapshot_of("preferences", since="2999-01-01").pk]
    elif case == "unknown snapshot":
        payload["snapshots"] = [999999]
    elif case == "unknown hyperparameter":
        payload["hyperparameters"] = {"warp_factor": 9}
    elif case == "out of range":
        payload["hyperparameters"] = {"learning_rate": 0}
    elif case == "not an object":
        payload["hyperparameters"] = [1, 2]
    elif case == "unknown stage":
        payload["stage"] = "dpo"
    elif case == "base does not load":
        broken = _broken_model(tmp_path, tiny_model_paths)
        project.candidate_models.add(ModelVersionFactory(name="broken-policy", source=str(broken)))
        payload["base_model"] = "broken-policy"
    elif case == "base of another project":
        ProjectFactory(slug="other").candidate_models.add(
            ModelVersionFactory(name="their-policy", source=str(tiny_model_paths.policy))
        )
        payload["base_model"] = "their-policy"
    elif case == "reward model for rm":
        payload["reward_model"] = "tiny-reward"
    elif case == "ppo without reward model":
        payload.update(stage="ppo", snapshots=[prompts.pk], hyperparameters={})
    elif case == "reward model tokenizer differs":
        other = ModelVersionFactory(
            name="other-reward",
            source=str(_other_chat_template(tmp_path, tiny_model_paths)),
            kind=ModelVersion.Kind.REWARD,
        )
        finished_rm_run(project, other, policy)
        payload.update(
            stage="ppo", snapshots=[prompts.pk], hyperparameters={}, reward_model="other-reward"
        )
    elif case == "reward model that is a policy":
        payload.update(
            stage="ppo", snapshots=[prompts.pk], hyperparameters={}, reward_model="tiny-policy"
        )
    elif case == "command backend unset":
        payload["backend"] = "command"
        settings.PARLEY = {
            **settings.PARLEY,
            "TRAINING": {**settings.PARLEY["TRAINING"], "COMMAND_TEMPLATE": ""},
        }
    runs_before = TrainingRun.objects.count()

    response = api_client_for(engineer).post(LIST_URL, payload, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    if field.startswith("hyperparameters."):
        name = field.split(".", 1)[1]
        message = " ".join(body["hyperparameters"][name])
    else:
        message = " ".join(body[field]) if isinstance(body[field], list) else str(body[field])
    assert words in message, body
    assert TrainingRun.objects.count() == runs_before
    sent.assert_not_called()


def test_a_ppo_run_with_a_reward_model_sharing_the_tokenizer_is_accepted(
    api_client_for, engineer, project, signal_data, snapshot_of, sent, tiny_models
):
    policy, reward = tiny_models
    finished_rm_run(project, reward, policy)
    signal_data(sets=2, prompts=20)
    prompts = snapshot_of("prompts")
    response = api_client_for(engineer).post(
        LIST_URL,
        {
            "stage": "ppo",
            "snapshots": [prompts.pk],
            "base_model": "tiny-policy",
            "reward_model": "tiny-reward",
            "hyperparameters": {"steps": 3, "kl_coef": 0.1},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get(stage="ppo")
    assert run.reward_model == reward and run.hyperparameters["kl_coef"] == 0.1


def test_detail_metrics_and_log_of_a_run(api_client_for, engineer, preferences, sent):
    run = training_run_start(
        project=preferences.project,
        user=engineer,
        stage="rm",
        snapshots=[preferences.pk],
        base_model="tiny-policy",
    )
    for step in range(0, 25, 5):
        TrainingMetric.objects.create(run=run, step=step, values={"loss": 1.0 / (step + 1)})
    TrainingMetric.objects.filter(run=run, step=20).update(values={"loss": 0.05, "accuracy": 0.95})
    client = api_client_for(engineer)

    detail = client.get(f"/api/v1/training-runs/{run.pk}/").json()
    assert detail["latest_metrics"]["accuracy"] == {"step": 20, "value": 0.95}
    assert detail["latest_metrics"]["loss"] == {"step": 20, "value": 0.05}
    assert "Queued by eve" in detail["log_tail"]

    first = client.get(f"/api/v1/training-runs/{run.pk}/metrics?limit=2").json()
    assert [m["step"] for m in first["metrics"]] == [0, 5] and first["next_after"] == 5
    rest = client.get(f"/api/v1/training-runs/{run.pk}/metrics?after=5").json()
    assert [m["step"] for m in rest["metrics"]] == [10, 15, 20] and rest["next_after"] is None
    bad = client.get(f"/api/v1/training-runs/{run.pk}/metrics?limit=0")
    assert bad.status_code == 400 and "limit" in bad.json()

    log = client.get(f"/api/v1/training-runs/{run.pk}/log").json()
    assert log["state"] == "queued" and "Queued by eve" in log["log"]

    listing = client.get(LIST_URL).json()
    assert [r["id"] for r in listing["results"]] == [run.pk]


def test_cancel_a_queued_run_then_409(api_client_for, engineer, preferences, sent):
    run = training_run_start(
        project=preferences.project,
        user=engineer,
        stage="rm",
        snapshots=[preferences.pk],
        base_model="tiny-policy",
    )
    client = api_client_for(engineer)
    response = client.post(f"/api/v1/training-runs/{run.pk}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert "Cancelled by eve" in response.json()["log_tail"]
    again = client.post(f"/api/v1/training-runs/{run.pk}/cancel")
    assert again.status_code == 409 and again.json()["state"] == "cancelled"


def test_a_lead_puts_a_succeeded_policy_to_use_with_one_call(
    api_client_for, lead, engineer, project, tiny_models
):
    policy, reward = tiny_models
    trained = ModelVersionFactory(name="alpha-ppo-run-1", source="org/x", parent=policy)
    run = TrainingRun.objects.create(
        project=project,
        stage="ppo",
        base_model=policy,
        reward_model=reward,
        state="succeeded",
        result_model=trained,
    )
    url = f"/api/v1/training-runs/{run.pk}/use"
    assert api_client_for(engineer).post(url, {"use": "draft"}, format="json").status_code == 403
    bad = api_client_for(lead).post(url, {"use": "both"}, format="json")
    assert bad.status_code == 400 and "use" in bad.json()

    response = api_client_for(lead).post(url, {"use": "candidate"}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "draft_model": "tiny-policy",
        "candidate_models": ["alpha-ppo-run-1"],
    }
    response = api_client_for(lead).post(url, {"use": "draft"}, format="json")
    assert response.json()["draft_model"] == "alpha-ppo-run-1"
    project.refresh_from_db()
    assert project.draft_model == trained


def test_a_reward_model_or_an_unfinished_run_is_not_put_to_use(
    api_client_for, lead, project, tiny_models
):
    policy, reward = tiny_models
    rm_run = finished_rm_run(project, reward, policy)
    response = api_client_for(lead).post(
        f"/api/v1/training-runs/{rm_run.pk}/use", {"use": "draft"}, format="json"
    )
    assert response.status_code == 400 and "reward model" in response.json()["run"][0]
    queued = TrainingRun.objects.create(project=project, stage="sft", base_model=policy)
    response = api_client_for(lead).post(
        f"/api/v1/training-runs/{queued.pk}/use", {"use": "draft"}, format="json"
    )
    assert response.status_code == 400 and "queued" in response.json()["run"][0]
    project.refresh_from_db()
    assert project.draft_model == policy


def test_schema_documents_the_training_endpoints(api_client_for, engineer):
    schema = api_client_for(engineer).get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/projects/{slug}/training-runs/"])
    assert "get" in paths["/api/v1/training-runs/{id}/"]
    assert "409" in paths["/api/v1/training-runs/{id}/cancel"]["post"]["responses"]
    report = paths["/api/v1/training-runs/{id}/report/"]["post"]
    assert {"200", "400", "401", "409"} <= set(report["responses"])
    assert report["security"] == [{"runToken": []}]
    assert schema["components"]["securitySchemes"]["runToken"]["in"] == "header"
