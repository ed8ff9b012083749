"""The data every other app builds on: projects and their members, models, conversation trees,
ranking sets and rankings, labels and reports on prompts.

Projects and memberships live here rather than in `labelling` because every other package
(exports, the trainer bridge) scopes its data and its access checks by project, and
`annotations` is the one package they may all import.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

DEFAULT_LABEL_SCHEMA = [
    {"name": "harmful", "kind": "flag", "description": "Harmful, dangerous or abusive content."},
    {"name": "untruthful", "kind": "flag", "description": "States something false as fact."},
    {"name": "fails_instruction", "kind": "flag", "description": "Does not do what was asked."},
    {"name": "pii", "kind": "flag", "description": "Contains personal information."},
    {
        "name": "wrong_language",
        "kind": "flag",
        "description": "Not in the conversation's language.",
    },
    {"name": "quality", "kind": "likert", "description": "Overall quality, 1 (bad) to 5 (great)."},
]

DEFAULT_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256}


def default_label_schema() -> list[dict]:
    return [dict(label) for label in DEFAULT_LABEL_SCHEMA]


def default_sampling() -> dict:
    return dict(DEFAULT_SAMPLING)


def default_languages() -> list[str]:
    return ["en"]


def default_comparison_contexts() -> list[str]:
    return ["model_reply", "human_reply", "prompt"]


class ModelVersion(models.Model):
    """A model the generation workers can load with `from_pretrained`, with its lineage."""

    class Kind(models.TextChoices):
        POLICY = "policy", "Policy (causal LM)"
        REWARD = "reward", "Reward model"

    class Dtype(models.TextChoices):
        AUTO = "auto", "auto"
        FLOAT32 = "float32", "float32"
        FLOAT16 = "float16", "float16"
        BFLOAT16 = "bfloat16", "bfloat16"

    name = models.CharField(
        max_length=200,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")],
        help_text="Stable name, e.g. tiny-policy-v1.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.POLICY)
    source = models.CharField(
        max_length=500, help_text="A model hub id or a local directory written by save_pretrained."
    )
    revision = models.CharField(max_length=200, blank=True, help_text="Hub revision or commit.")
    dtype = models.CharField(max_length=16, choices=Dtype.choices, default=Dtype.AUTO)
    chat_template = models.TextField(
        blank=True, help_text="Jinja chat template; blank uses the tokenizer's own."
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The model this one was trained from.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    """A body of annotation work with its own guidelines, settings, models and members."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to trainers on every task.")
    languages = models.JSONField(default=default_languages, blank=True)
    replies_per_set = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(2), MaxValueValidator(9)],
        help_text="K: candidate replies sampled for each ranking set.",
    )
    rankings_per_set = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="N: trainers who rank each set.",
    )
    label_schema = models.JSONField(default=default_label_schema, blank=True)
    draft_model = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="draft_projects",
        limit_choices_to={"kind": ModelVersion.Kind.POLICY},
    )
    candidate_models = models.ManyToManyField(
        ModelVersion,
        blank=True,
        related_name="candidate_projects",
        limit_choices_to={"kind": ModelVersion.Kind.POLICY},
    )
    sampling = models.JSONField(default=default_sampling, blank=True)
    max_generations_per_request = models.PositiveSmallIntegerField(
        default=9, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    max_turns = models.PositiveSmallIntegerField(
        default=20, validators=[MinValueValidator(2)], help_text="Most messages in a dialogue."
    )
    max_message_chars = models.PositiveIntegerField(default=8000, validators=[MinValueValidator(1)])
    max_open_tasks = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Open tasks one trainer may hold."
    )
    task_lease_seconds = models.PositiveIntegerField(
        default=30 * 60, validators=[MinValueValidator(60)]
    )
    keep_autosave_on_expiry = models.BooleanField(
        default=False, help_text="Hand an abandoned task's autosaved text to the next trainer."
    )
    comparison_contexts = models.JSONField(
        default=default_comparison_contexts,
        blank=True,
        help_text="Where ranking sets may cut a conversation: after a model-written reply "
        "(model_reply), after a human-written one (human_reply), or at a fresh prompt (prompt).",
    )
    comparison_queue_depth = models.PositiveIntegerField(
        default=20, help_text="Ranking sets kept collecting; a beat task tops the queue up."
    )
    include_human_reply = models.BooleanField(
        default=True, help_text="Add the existing human reply as one of the K candidates."
    )
    candidate_sampling = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per candidate model name, sampling parameters that override `sampling`.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(replies_per_set__gte=2, replies_per_set__lte=9),
                name="project_replies_per_set_2_to_9",
            ),
            models.CheckConstraint(
                condition=Q(rankings_per_set__gte=1), name="project_rankings_per_set_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def label_names(self) -> set[str]:
        return {label["name"] for label in self.label_schema or []}


class Membership(models.Model):
    """A user's role in a project. Leads manage; engineers export and train; trainers annotate."""

    class Role(models.TextChoices):
        TRAINER = "trainer", "Trainer"
        LEAD = "lead", "Lead"
        ENGINEER = "engineer", "Engineer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_one_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Conversation(models.Model):
    """A tree of messages that shares one first user turn (or system prompt)."""

    class Source(models.TextChoices):
        PROMPT = "prompt", "Prompt pool"
        DEMONSTRATION = "demonstration", "Demonstration"
        IMPORT = "import", "Import"
        API = "api", "API"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    source = models.CharField(max_length=16, choices=Source.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
    )
    external_id = models.CharField(max_length=200, blank=True, help_text="Id in an imported file.")
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "source", "created_at"]),
            # The explorer's list, newest first, a page at a time.
            models.Index(fields=["project", "created_at", "id"], name="conversation_newest_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="conversation_external_id_unique_in_project",
            ),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.source})"


class Message(models.Model):
    """One turn. Alternatives are siblings; the author is a person or a model version."""

    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    lang = models.CharField(max_length=16, blank=True, default="en")
    depth = models.PositiveSmallIntegerField(default=0, help_text="0 for the first message.")
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    author_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    is_synthetic = models.BooleanField(
        default=False, help_text="Written by a model (author_model set, or marked so in an import)."
    )
    draft = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="derived",
        help_text="The model-written draft a human reply started from.",
    )
    draft_edit_distance = models.PositiveIntegerField(null=True, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    # db_default too: bulk imports write messages with COPY and name only the columns they set.
    is_excluded = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Left out of exports by a lead (the reason is in the audit log).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation_id", "depth", "id"]
        indexes = [
            models.Index(fields=["conversation", "parent"]),
            # The dashboards' refresh reads the assistant turns trainers wrote since its last run.
            models.Index(
                fields=["created_at"],
                condition=Q(role="assistant", author_user__isnull=False),
                name="message_human_turn_idx",
            ),
        ]
        constraints = [
            # Together with a composite foreign key (parent_id, conversation_id) added in the
            # migration, this keeps a message and its parent in the same conversation.
            models.UniqueConstraint(fields=["id", "conversation"], name="message_id_conversation"),
            models.CheckConstraint(
                condition=Q(author_model__isnull=True) | Q(author_user__isnull=True),
                name="message_one_author",
            ),
            models.CheckConstraint(
                condition=Q(author_model__isnull=True) | Q(is_synthetic=True),
                name="message_model_author_is_synthetic",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=False) | Q(role__in=["user", "system"]),
                name="message_root_is_user_or_system",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | ~Q(role="system"),
                name="message_system_only_at_root",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=False, depth__gte=1) | Q(parent__isnull=True, depth=0),
                name="message_depth_matches_parent",
            ),
            models.CheckConstraint(
                condition=Q(draft__isnull=False) | Q(draft_edit_distance__isnull=True),
                name="message_edit_distance_needs_draft",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"

    def clean(self) -> None:
        if self.parent_id and self.parent.conversation_id != self.conversation_id:
            raise ValidationError({"parent": "The parent belongs to another conversation."})


class RankingSet(models.Model):
    """K sibling replies after one context message, to be ranked by N trainers."""

    class State(models.TextChoices):
        SAMPLING = "sampling", "Waiting for candidates"
        COLLECTING = "collecting", "Collecting rankings"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ranking_sets")
    context = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="ranking_sets",
        help_text="The last message before the replies being ranked.",
    )
    candidates = models.ManyToManyField(
        Message, through="RankingCandidate", related_name="in_ranking_sets"
    )
    rankings_needed = models.PositiveSmallIntegerField(default=3)
    replies_wanted = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="K when the set was started: changing the project's K applies to new sets "
        "only. Empty for sets made before it was recorded (they use the project's K).",
    )
    rankings_count = models.PositiveSmallIntegerField(
        default=0, help_text="Rankings stored so far (kept in step by the ranking service)."
    )
    authors = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="People who wrote the context or a candidate: never asked to rank this set.",
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.COLLECTING, db_index=True
    )
    consensus = models.JSONField(
        null=True, blank=True, help_text="Consensus order: groups of message ids, best first."
    )
    agreement = models.FloatField(null=True, blank=True)
    kendall_tau = models.FloatField(null=True, blank=True)
    resamples = models.PositiveSmallIntegerField(
        default=0,
        help_text="Rounds of extra samples asked for because exact duplicates left fewer than K.",
    )
    cancel_reason = models.TextField(blank=True, default="", help_text="Why it was cancelled.")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "state", "created_at"]),
            # The explorer's list, newest first, a page at a time.
            models.Index(fields=["project", "created_at", "id"], name="ranking_set_newest_idx"),
            # The agreement page's lowest sets: read in the list's order (agreement, id) and
            # stopped after a page, the span checked on the index entries.
            models.Index(
                fields=["project", "agreement", "id", "completed_at"],
                condition=Q(state="complete", agreement__isnull=False),
                name="ranking_set_lowest_idx",
            ),
            # The dashboards' refresh: the project's sets completed since its previous run.
            models.Index(
                fields=["project", "completed_at"],
                condition=Q(state="complete", completed_at__isnull=False),
                name="ranking_set_completed_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(rankings_needed__gte=1), name="ranking_set_needs_a_ranking"
            ),
            models.CheckConstraint(
                condition=Q(agreement__isnull=True) | Q(agreement__gte=0, agreement__lte=1),
                name="ranking_set_agreement_0_to_1",
            ),
        ]

    def __str__(self) -> str:
        return f"Ranking set {self.pk} ({self.state})"


class RankingCandidate(models.Model):
    ranking_set = models.ForeignKey(RankingSet, on_delete=models.CASCADE, related_name="entries")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["ranking_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["ranking_set", "message"], name="candidate_once"),
            models.UniqueConstraint(fields=["ranking_set", "position"], name="candidate_position"),
        ]

    def __str__(self) -> str:
        return f"Candidate {self.position} of set {self.ranking_set_id}"


class Ranking(models.Model):
    """One trainer's order over a set: groups of message ids, best first; a group is a tie."""

    ranking_set = models.ForeignKey(RankingSet, on_delete=models.CASCADE, related_name="rankings")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rankings",
        help_text="Empty for rankings brought in by an import.",
    )
    order = models.JSONField()
    flags = models.JSONField(default=dict, blank=True)
    all_bad = models.BooleanField(default=False)
    rewrite = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="rewrite_of"
    )
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    is_excluded = models.BooleanField(default=False, help_text="Left out of exports by a lead.")
    # Set while a trainer's exclusion is what keeps the ranking out, so that lifting it counts
    # exactly those rankings again and not the ones a lead excluded one by one.
    excluded_by = models.ForeignKey(
        "AnnotatorExclusion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rankings",
        help_text="The trainer's exclusion that excluded it; empty when excluded by hand.",
    )
    # Quality figures written when the set completes (and again when its rankings change), so
    # that dashboards over hundreds of thousands of sets read sums instead of recomputing.
    consensus_agreement = models.FloatField(
        null=True,
        blank=True,
        help_text="Pairwise agreement of this order with the consensus of the set's other "
        "(not excluded) rankings; empty when there are no others.",
    )
    length_pairs = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Strict pairs in this order whose replies differ in length.",
    )
    longer_preferred = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Of `length_pairs`, those where the longer reply won."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ranking_set", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ranking_set", "annotator"], name="ranking_one_per_trainer_per_set"
            ),
        ]

    def __str__(self) -> str:
        return f"Ranking of set {self.ranking_set_id} by {self.annotator or 'import'}"


class Label(models.Model):
    """One value for one message on one label of the project's schema."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=64)
    value = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(5)],
        help_text="0/1 for flags, 1..5 for Likert labels.",
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="labels",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "name", "annotator"], name="label_once_per_annotator"
            ),
            models.CheckConstraint(condition=Q(value__lte=5), name="label_value_0_to_5"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value} on message {self.message_id}"


class PromptReport(models.Model):
    """A report that a prompt is unfit; the prompt leaves the pool until a lead decides."""

    class Reason(models.TextChoices):
        HARMFUL = "harmful", "Harmful"
        PII = "pii", "Personal information"
        NONSENSE = "nonsense", "Nonsense"
        WRONG_LANGUAGE = "wrong_language", "Wrong language"

    class State(models.TextChoices):
        OPEN = "open", "Waiting for a lead"
        UPHELD = "upheld", "Upheld: prompt removed"
        DISMISSED = "dismissed", "Dismissed: prompt back in the pool"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompt_reports")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=32, choices=Reason.choices)
    note = models.CharField(max_length=1000, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "state"])]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} report on message {self.message_id} ({self.state})"


class AnnotatorExclusion(models.Model):
    """A lead's decision that one trainer's rankings in a project stop counting from a date on.

    Rankings the trainer made since `since`, and any they make later, are excluded from
    consensus, agreement and exports while the exclusion stands (`lifted_at` empty).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exclusions")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    since = models.DateTimeField()
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "annotator"])]

    def __str__(self) -> str:
        return f"{self.annotator} excluded from {self.project} since {self.since:%Y-%m-%d}"


class AuditEntry(models.Model):
    """One change a lead or staff member made to a project, its people or its data.

    Written only through `annotations.audit.audit_record`; shown on the pages where the changes
    are made. `before` and `after` hold the changed fields' values (JSON), `target` names what
    was changed in words a lead reads ("ranking 12", "trainer alice").
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_entries")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64, help_text='Dotted name, e.g. "ranking.exclude".')
    target = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "action", "created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.actor} in {self.project}"
