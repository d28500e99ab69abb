"""Researchers run their campaigns and review suspicious players here."""

from django.contrib import admin, messages

from annotations.admin import ResearcherScopedAdmin

from . import tasks
from .models import Campaign, PlayerFlag, PlayerStats, Submission


@admin.register(Campaign)
class CampaignAdmin(ResearcherScopedAdmin):
    list_display = [
        "name",
        "dataset",
        "visibility",
        "round_size",
        "gold_rate",
        "annotations_per_image",
        "starts_at",
        "ends_at",
    ]
    list_filter = ["visibility"]
    search_fields = ["name"]
    filter_horizontal = ["label_classes"]
    readonly_fields = ["invite_code", "created_at"]
    actions = ["fuse_now"]

    @admin.action(description="Fuse now (all images jointly) and settle points")
    def fuse_now(self, request, queryset):
        for campaign in queryset:
            tasks.campaign_fuse.delay(campaign.pk)
        messages.success(request, f"Fusion queued for {queryset.count()} campaign(s).")

    def get_exclude(self, request, obj=None):
        return [] if request.user.is_superuser else ["owner"]

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser:
            obj.owner = request.user
        super().save_model(request, obj, form, change)


@admin.register(PlayerFlag)
class PlayerFlagAdmin(ResearcherScopedAdmin):
    """Suspicious submissions in your campaigns: too fast, blank, copied or pasted masks, late."""

    dataset_path = "campaign__dataset"
    list_display = ["player", "reason", "campaign", "created_at"]
    list_filter = ["reason", "campaign"]
    search_fields = ["player__username", "player__pseudonym"]
    readonly_fields = ["player", "campaign", "submission", "reason", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Submission)
class SubmissionAdmin(ResearcherScopedAdmin):
    dataset_path = "round_task__round__campaign__dataset"
    list_display = ["player", "round_task", "status", "flag", "provisional_points", "points", "quality", "submitted_at"]
    list_filter = ["status", "flag"]
    readonly_fields = [f.name for f in Submission._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(PlayerStats)
class PlayerStatsAdmin(admin.ModelAdmin):
    list_display = ["player", "level", "xp", "tasks_submitted", "golds_settled", "flags", "suspicious"]
    list_filter = ["suspicious"]
    search_fields = ["player__username", "player__pseudonym"]
    readonly_fields = [f.name for f in PlayerStats._meta.fields if f.name != "suspicious"]

    # Stats span every campaign, so they are no researcher's data: superusers only.
    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser


# A campaign's labels leave through the dataset's export (annotations.admin): one way to export.
from annotations.admin import campaign_export  # noqa: E402

CampaignAdmin.actions = [*CampaignAdmin.actions, campaign_export]
