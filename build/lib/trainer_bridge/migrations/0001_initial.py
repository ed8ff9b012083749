"""Generation requests move here from `annotations`, and their outputs get a table of their own.

The request table and its rows stay where they are: this app takes the model over in Django's
state only (still on the table `annotations_generationrequest`; 0003 renames it, once
`annotations` has let go of it). The outputs' table is new; 0002 fills it.
"""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("annotations", "0007_promptreport"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="GenerationRequest",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "purpose",
                            models.CharField(
                                choices=[("draft", "Draft"), ("candidates", "Candidates")],
                                max_length=16,
                            ),
                        ),
                        (
                            "n",
                            models.PositiveSmallIntegerField(
                                default=1,
                                validators=[django.core.validators.MinValueValidator(1)],
                            ),
                        ),
                        ("params", models.JSONField(blank=True, default=dict)),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("running", "Running"),
                                    ("done", "Done"),
                                    ("failed", "Failed"),
                                ],
                                db_index=True,
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        ("attempts", models.PositiveSmallIntegerField(default=0)),
                        ("error", models.TextField(blank=True)),
                        ("worker", models.CharField(blank=True, max_length=200)),
                        ("prompt_tokens", models.PositiveIntegerField(blank=True, null=True)),
                        ("completion_tokens", models.PositiveIntegerField(blank=True, null=True)),
                        ("queued_at", models.DateTimeField(auto_now_add=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "context",
                            models.ForeignKey(
                                help_text="The last message of the context; replies become its children.",
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="generation_requests",
                                to="annotations.message",
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="generation_requests",
                                to="annotations.modelversion",
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="generations",
                                to="annotations.project",
                            ),
                        ),
                        (
                            "requested_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-queued_at"],
                        "db_table": "annotations_generationrequest",
                        "indexes": [
                            models.Index(
                                fields=["state", "model_version", "queued_at"],
                                name="annotations_state_4c70ab_idx",
                            )
                        ],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("n__gte", 1)), name="generation_n_positive"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(("state", "running"), _negated=True),
                                    ("started_at__isnull", False),
                                    _connector="OR",
                                ),
                                name="generation_running_has_start",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.CreateModel(
            name="GenerationOutput",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "output_index",
                    models.PositiveSmallIntegerField(
                        help_text="Which of the request's n outputs this is."
                    ),
                ),
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="generation_output",
                        to="annotations.message",
                    ),
                ),
                (
                    "request",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outputs",
                        to="trainer_bridge.generationrequest",
                    ),
                ),
            ],
            options={
                "ordering": ["request", "output_index"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("request", "output_index"), name="generation_output_once"
                    )
                ],
            },
        ),
    ]
