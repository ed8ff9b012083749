"""The move of generation requests from annotations to the trainer bridge keeps every row, both
ways: the requests with their ids (and their content type), which message is which output of
which request, and which requests sample which ranking set.

Not marked `postgres`: it runs on SQLite and on PostgreSQL alike.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

# Schema changes cannot run inside the transaction a plain django_db test is wrapped in.
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("contenttypes", "0002_remove_content_type_name"),
    ("annotations", "0007_promptreport"),
    ("labelling", "0006_task_autosave_pages"),
    ("trainer_bridge", None),
]
AFTER = [
    ("annotations", "0008_generation_requests_leave_for_trainer_bridge"),
    ("labelling", "0007_ranking_set_sampling"),
    ("trainer_bridge", "0003_generation_request_table"),
]
REQUEST_FIELDS = ["id", "project_id", "context_id", "model_version_id", "purpose", "n", "params"]
REQUEST_FIELDS += ["state", "attempts", "error", "requested_by_id", "queued_at"]


def migrate(targets):
    """Migrate the test database to `targets`; return the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    # (app, None) stands for "none of the app's migrations": no node of the state to build.
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.fixture
def at_latest_afterwards():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def requests_of(model):
    return list(model.objects.order_by("pk").values(*REQUEST_FIELDS))


def assert_parent_stays_in_its_conversation(apps, parent):
    """The database still refuses a reply filed under another conversation (0002's constraint,
    which SQLite keeps as triggers that a rebuilt table would lose)."""
    other = apps.get_model("annotations", "Conversation").objects.create(
        project_id=parent.conversation.project_id, source="prompt"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        apps.get_model("annotations", "Message").objects.create(
            conversation_id=other.pk, parent_id=parent.pk, role="assistant", text="x", depth=1
        )


def test_requests_outputs_and_set_links_move_and_come_back(at_latest_afterwards):
    old = migrate(BEFORE)
    lead = old.get_model("auth", "User").objects.create(username="lee")
    project = old.get_model("annotations", "Project").objects.create(slug="alpha", name="Alpha")
    model = old.get_model("annotations", "ModelVersion").objects.create(name="tiny", source="x")
    conversations = old.get_model("annotations", "Conversation")
    messages = old.get_model("annotations", "Message")
    prompts = [
        messages.objects.create(
            conversation=conversations.objects.create(project=project, source="prompt"),
            role="user",
            text=text,
            depth=0,
        )
        for text in ("Name a fruit.", "Name a river.")
    ]
    requests = old.get_model("annotations", "GenerationRequest")
    done = requests.objects.create(
        project=project, context=prompts[0], model_version=model, purpose="candidates",
        n=3, params={"temperature": 0.7, "max_new_tokens": 8, "seed": 5}, state="done",
        attempts=1, requested_by=lead,
    )  # fmt: skip
    failed = requests.objects.create(
        project=project, context=prompts[1], model_version=model, purpose="draft",
        state="failed", error="boom",
    )  # fmt: skip

    def reply(request, index):
        context = request.context
        return messages.objects.create(
            conversation_id=context.conversation_id, parent=context, role="assistant",
            text=f"{request.pk}/{index}", depth=1, author_model=model, is_synthetic=True,
            generation_request=request, output_index=index,
        )  # fmt: skip

    # Written out of order: the copy keeps the indexes, it does not count them.
    outputs = {(done.pk, index): reply(done, index).pk for index in (2, 0, 1)}
    human = messages.objects.create(
        conversation_id=prompts[0].conversation_id, parent=prompts[0], role="assistant",
        text="By hand", depth=1, author_user=lead,
    )  # fmt: skip
    sets = old.get_model("annotations", "RankingSet")
    sampling = sets.objects.create(project=project, context=prompts[0], state="sampling")
    sampling.generation_requests.add(done, failed)
    cancelled = sets.objects.create(project=project, context=prompts[1], state="cancelled")
    cancelled.generation_requests.add(failed)
    links = {(sampling.pk, done.pk), (sampling.pk, failed.pk), (cancelled.pk, failed.pk)}
    before = requests_of(requests)
    # Its content type (which permissions and the admin's history point at) moves with it.
    content_type = (
        old.get_model("contenttypes", "ContentType")
        .objects.get_or_create(app_label="annotations", model="generationrequest")[0]
        .pk
    )

    new = migrate(AFTER)
    assert_parent_stays_in_its_conversation(new, prompts[0])
    moved = new.get_model("trainer_bridge", "GenerationRequest")
    assert requests_of(moved) == before
    tables = connection.introspection.table_names()
    assert "trainer_bridge_generationrequest" in tables
    assert "annotations_generationrequest" not in tables
    assert "annotations_rankingset_generation_requests" not in tables
    copied = new.get_model("trainer_bridge", "GenerationOutput").objects.values_list(
        "request_id", "output_index", "message_id"
    )
    assert {(r, i): m for r, i, m in copied} == outputs
    assert not new.get_model("trainer_bridge", "GenerationOutput").objects.filter(
        message_id=human.pk
    )
    samplings = new.get_model("labelling", "RankingSetSampling").objects.values_list(
        "ranking_set_id", "generation_request_id"
    )
    assert set(samplings) == links
    assert (
        new.get_model("contenttypes", "ContentType")
        .objects.filter(app_label="trainer_bridge", model="generationrequest")
        .get()
        .pk
        == content_type
    )
    # The table (and on PostgreSQL its id sequence) stayed: the next request gets a fresh id.
    later = moved.objects.create(
        project_id=project.pk, context_id=prompts[1].pk, model_version_id=model.pk, purpose="draft"
    )
    assert later.pk > failed.pk
    after = requests_of(moved)

    back = migrate(BEFORE)
    assert_parent_stays_in_its_conversation(back, prompts[0])
    returned = back.get_model("annotations", "GenerationRequest")
    assert requests_of(returned) == after
    linked = back.get_model("annotations", "Message").objects.filter(
        generation_request__isnull=False
    )
    assert {(m.generation_request_id, m.output_index): m.pk for m in linked} == outputs
    through = back.get_model("annotations", "RankingSet").generation_requests.through
    assert set(through.objects.values_list("rankingset_id", "generationrequest_id")) == links
