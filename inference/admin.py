from django.contrib import admin

from annotations.admin import ResearcherScopedAdmin

from .models import ImageEmbedding


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(ResearcherScopedAdmin):
    dataset_path = "image__dataset"
    list_display = ["image", "model_version", "status", "encode_ms", "attempts", "updated_at"]
    list_filter = ["status", "model_version"]
    raw_id_fields = ["image"]
    readonly_fields = ["error", "encode_ms", "attempts", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("image")
