"""Admin pages for generation requests, scoped like the core data to the projects a lead leads."""

from django.contrib import admin

from annotations.admin_scoping import ProjectScopedAdmin, ScopedInline
from trainer_bridge.models import GenerationOutput, GenerationRequest

Related = admin.RelatedOnlyFieldListFilter  # filter choices from the visible rows only


class GenerationOutputInline(ScopedInline):
    """The replies a request wrote: workers store them, the admin only shows them."""

    model = GenerationOutput
    extra = 0
    fields = ["output_index", "message"]
    readonly_fields = ["output_index", "message"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(GenerationRequest)
class GenerationRequestAdmin(ProjectScopedAdmin):
    list_display = [
        "id", "project", "purpose", "model_version", "n", "state", "attempts", "queued_at",
        "finished_at",
    ]  # fmt: skip
    list_filter = ["state", "purpose", ("project", Related), ("model_version", Related)]
    search_fields = ["error"]
    raw_id_fields = ["context", "requested_by"]
    readonly_fields = ["queued_at", "started_at", "finished_at", "error", "worker"]
    inlines = [GenerationOutputInline]
