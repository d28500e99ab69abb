from django.contrib import admin

from .models import ImageEmbedding


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image", "model_version", "status", "encode_ms", "attempts", "updated_at"]
    list_filter = ["status", "model_version"]
    raw_id_fields = ["image"]
    readonly_fields = ["error", "encode_ms", "attempts", "created_at", "updated_at"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("image")
        if request.user.is_superuser:
            return queryset
        return queryset.filter(image__dataset__owner=request.user)
