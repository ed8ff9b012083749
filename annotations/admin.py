"""Admin pages for the core data."""

from django.contrib import admin

from annotations.models import (
    Conversation,
    GenerationRequest,
    Label,
    Membership,
    Message,
    ModelVersion,
    Project,
    PromptReport,
    Ranking,
    RankingCandidate,
    RankingSet,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "replies_per_set",
        "rankings_per_set",
        "draft_model",
        "is_active",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["candidate_models"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user", "project"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "source", "revision", "dtype", "parent", "created_at"]
    list_filter = ["kind", "dtype"]
    search_fields = ["name", "source"]
    autocomplete_fields = ["parent"]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["parent", "role", "depth", "text", "author_user", "author_model", "is_synthetic"]
    raw_id_fields = ["parent", "author_user", "author_model"]
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "created_by", "external_id", "created_at"]
    list_filter = ["source", "project"]
    search_fields = ["external_id", "messages__text"]
    raw_id_fields = ["created_by"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "conversation",
        "role",
        "depth",
        "author_user",
        "author_model",
        "created_at",
    ]
    list_filter = ["role", "is_synthetic", "conversation__project"]
    search_fields = ["text", "external_id"]
    raw_id_fields = [
        "conversation", "parent", "author_user", "author_model", "draft", "generation_request",
    ]  # fmt: skip
    list_select_related = ["conversation", "author_user", "author_model"]


class RankingCandidateInline(admin.TabularInline):
    model = RankingCandidate
    extra = 0
    raw_id_fields = ["message"]


class RankingInline(admin.TabularInline):
    model = Ranking
    extra = 0
    fields = ["annotator", "order", "all_bad", "time_spent_ms", "is_excluded"]
    raw_id_fields = ["annotator"]


@admin.register(RankingSet)
class RankingSetAdmin(admin.ModelAdmin):
    list_display = [
        "id", "project", "state", "rankings_needed", "agreement", "resamples", "created_at"
    ]  # fmt: skip
    list_filter = ["state", "project"]
    raw_id_fields = ["context"]
    readonly_fields = ["resamples", "cancel_reason"]
    inlines = [RankingCandidateInline, RankingInline]


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = ["id", "ranking_set", "annotator", "all_bad", "is_excluded", "created_at"]
    list_filter = ["is_excluded", "all_bad", "ranking_set__project"]
    raw_id_fields = ["ranking_set", "annotator", "rewrite"]
    actions = ["exclude_from_exports", "include_in_exports"]

    @admin.action(description="Exclude the selected rankings from exports")
    def exclude_from_exports(self, request, queryset):
        queryset.update(is_excluded=True)

    @admin.action(description="Include the selected rankings in exports")
    def include_in_exports(self, request, queryset):
        queryset.update(is_excluded=False)


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "message", "name", "value", "annotator", "created_at"]
    list_filter = ["name"]
    raw_id_fields = ["message", "annotator"]


@admin.register(GenerationRequest)
class GenerationRequestAdmin(admin.ModelAdmin):
    list_display = [
        "id", "project", "purpose", "model_version", "n", "state", "attempts", "queued_at",
        "finished_at",
    ]  # fmt: skip
    list_filter = ["state", "purpose", "project", "model_version"]
    search_fields = ["error"]
    raw_id_fields = ["context", "requested_by"]
    readonly_fields = ["queued_at", "started_at", "finished_at", "error", "worker"]


@admin.register(PromptReport)
class PromptReportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "message", "reason", "state", "reporter", "created_at"]
    list_filter = ["state", "reason", "project"]
    search_fields = ["note", "message__text"]
    raw_id_fields = ["message", "reporter", "decided_by"]
    list_select_related = ["project", "reporter"]
    # Leads decide through the review queue, which settles every open report on the prompt at
    # once; the admin shows the decision but does not make it.
    readonly_fields = ["state", "decided_by", "decided_at"]
