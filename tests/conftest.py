"""Shared fixtures: members of a project in each role, the admin world, API clients, a live
Celery worker; and the checks and waits that tests in several folders share."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db.models import Model
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    PromptReport,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from labelling.models import RankingSetSampling, Task, TaskSkip
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationOutput, GenerationRequest
from trainer_bridge.tiny_model import TinyModelPaths, build_tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_paths(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    """The tiny local model, built once per test session (tests must not write into it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def project(db):
    return ProjectFactory(slug="alpha", name="Alpha")


@pytest.fixture
def trainer(project):
    return MembershipFactory(
        project=project, user=UserFactory(username="tina"), role="trainer"
    ).user


@pytest.fixture
def lead(project):
    return MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead").user


@pytest.fixture
def engineer(project):
    return MembershipFactory(
        project=project, user=UserFactory(username="eve"), role=Membership.Role.ENGINEER
    ).user


@pytest.fixture
def outsider(db):
    return UserFactory(username="olga")


# The admin world: two projects with one object of every admin-registered model each, and a
# staff lead of the first.

# What a lead is given by `seed_demo`, plus the auth permissions someone might add: scoping must
# hold even for a lead whose permissions are generous.
LEAD_PERMISSION_APPS = ["annotations", "labelling", "trainer_bridge", "auth", "authtoken"]


@dataclass
class Side:
    objects: dict[type[Model], Model] = field(default_factory=dict)

    def __getitem__(self, model: type[Model]) -> Model:
        return self.objects[model]


@dataclass
class World:
    lead: Model
    a: Side
    b: Side
    shared_model: ModelVersion
    group: Group


def _side(slug: str, name: str, lead, model: ModelVersion, shared_model: ModelVersion) -> Side:
    project = ProjectFactory(slug=slug, name=name, draft_model=model)
    project.candidate_models.add(shared_model)
    trainer = UserFactory(username=f"{slug}-trainer")
    membership = MembershipFactory(project=project, user=trainer, role=Membership.Role.TRAINER)
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    conversation = Conversation.objects.create(
        project=project, source=Conversation.Source.DEMONSTRATION, created_by=trainer
    )
    prompt = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        text=f"{name} prompt",
        author_user=trainer,
    )
    generation = GenerationRequest.objects.create(
        project=project,
        context=prompt,
        model_version=model,
        purpose=GenerationRequest.Purpose.CANDIDATES,
        n=2,
        requested_by=lead,
    )
    replies = [
        Message.objects.create(
            conversation=conversation,
            parent=prompt,
            depth=1,
            role=Message.Role.ASSISTANT,
            text=f"{name} reply {i}",
            author_model=model,
            is_synthetic=True,
        )
        for i in range(2)
    ]
    for i, reply in enumerate(replies):
        GenerationOutput.objects.create(request=generation, message=reply, output_index=i)
    ranking_set = RankingSet.objects.create(project=project, context=prompt, rankings_needed=1)
    for position, reply in enumerate(replies):
        RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=position)
    RankingSetSampling.objects.create(ranking_set=ranking_set, generation_request=generation)
    ranking_set.authors.add(trainer)
    ranking = Ranking.objects.create(
        ranking_set=ranking_set, annotator=trainer, order=[[replies[0].pk], [replies[1].pk]]
    )
    label = Label.objects.create(message=replies[0], name="harmful", value=1, annotator=trainer)
    report = PromptReport.objects.create(
        project=project, message=prompt, reporter=trainer, reason=PromptReport.Reason.PII
    )
    task = Task.objects.create(
        project=project,
        kind=Task.Kind.RANKING,
        ranking_set=ranking_set,
        autosave={"text": f"{name} autosaved work"},
    )
    skip = TaskSkip.objects.create(task=task, user=trainer, reason="busy")
    return Side(
        {
            type(project): project,
            Membership: membership,
            ModelVersion: model,
            Conversation: conversation,
            Message: prompt,
            GenerationRequest: generation,
            RankingSet: ranking_set,
            Ranking: ranking,
            Label: label,
            PromptReport: report,
            Task: task,
            TaskSkip: skip,
            type(trainer): trainer,
        }
    )


def build_world() -> World:
    """Project A ("Alpha-Open") led by `lee`; project B ("Bravo-Secret") led by someone else."""
    lead = UserFactory(username="lee", is_staff=True)
    lead.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=LEAD_PERMISSION_APPS)
    )
    other_lead = UserFactory(username="bob", is_staff=True)
    shared_model = ModelVersionFactory(name="shared-policy")
    a = _side("alpha", "Alpha-Open", lead, ModelVersionFactory(name="alpha-policy"), shared_model)
    b = _side(
        "bravo", "Bravo-Secret", other_lead, ModelVersionFactory(name="bravo-policy"), shared_model
    )
    group = Group.objects.create(name="Leads")
    group.permissions.set(Permission.objects.all())
    return World(lead=lead, a=a, b=b, shared_model=shared_model, group=group)


@pytest.fixture
def world(db):
    """Two projects with one object of every admin-registered model each, and a staff lead of
    the first (build_world)."""
    return build_world()


@pytest.fixture
def lead_client(client, world):
    """A test client logged in as the world's staff lead."""
    client.force_login(world.lead)
    return client


# Checks of the admin's scoping on the world above, for tests/annotations/test_admin.py and
# tests/labelling/test_admin.py.


def admin_url(model: type[Model], view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def assert_changelist_scoped(client, model: type[Model], world: World) -> None:
    response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert admin_url(model, "change", world.a[model].pk) in page
    assert admin_url(model, "change", world.b[model].pk) not in page
    # Not even in a list filter's choices.
    assert "Bravo-Secret" not in page


def assert_object_unreachable(client, model: type[Model], obj: Model) -> None:
    before = model.objects.filter(pk=obj.pk).values().get()
    for view in ["change", "delete", "history"]:
        assert client.get(admin_url(model, view, obj.pk)).status_code != 200, view
    assert client.post(admin_url(model, "change", obj.pk), {}).status_code != 200
    assert client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code != 200
    client.post(
        admin_url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert model.objects.filter(pk=obj.pk).values().get() == before


def assert_no_choices_from_b(response, world: World) -> None:
    """Every select, raw-id and many-to-many field on the page (inlines too) excludes B."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.empty_form)
    checked = 0
    for form in forms:
        for name, formfield in form.fields.items():
            queryset = getattr(formfield, "queryset", None)
            if queryset is None or queryset.model not in world.b.objects:
                continue
            if name == form._meta.model._meta.pk.name:
                continue  # an inline row's own id: looked up among the parent's rows only
            assert not queryset.filter(pk=world.b[queryset.model].pk).exists(), name
            checked += 1
    assert checked


@pytest.fixture
def api_client_for():
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def worker_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    env["PARLEY_WORKER_USES_TEST_DB"] = "1"
    env.update(overrides)
    return env


@pytest.fixture
def start_celery_worker(transactional_db):
    """Start real `celery worker` processes on the configured broker, serving every queue.

    They share the test database (committed data only, hence transactional_db); extra keyword
    arguments become environment variables of the worker (e.g. fault injection). Every worker
    still running at the end of the test is stopped.
    """
    env = worker_env()
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    subprocess.run(
        [*celery, "purge", "-f", "-Q", "default,gpu,train"],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    started: list[subprocess.Popen] = []

    def start(name: str = "w1", **env_overrides: str) -> subprocess.Popen:
        log = Path(settings.VAR_DIR) / f"test-worker-{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*celery, "worker", "-Q", "default,gpu,train", "--pool", "solo",
                 "--loglevel", "INFO", "--hostname", f"{name}-{os.getpid()}@%h",
                 "--without-heartbeat", "--without-mingle", "--without-gossip"],
                env=worker_env(**env_overrides), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        proc.log_path = log
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Celery worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def celery_worker(start_celery_worker):
    """One real worker serving every queue for the length of the test."""
    return start_celery_worker()


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout}s")
