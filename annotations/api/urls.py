from django.urls import path

from . import views

urlpatterns = [
    path("datasets", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/label-classes", views.LabelClassCreateView.as_view(), name="labelclass-create"),
    path("datasets/<int:dataset_id>/images", views.DatasetImagesView.as_view(), name="dataset-images"),
    path("tasks/<uuid:task_id>/gold", views.TaskGoldView.as_view(), name="task-gold"),
    path("datasets/<int:dataset_id>/exports", views.DatasetExportsView.as_view(), name="dataset-exports"),
    path("exports/<int:export_id>", views.ExportDetailView.as_view(), name="export-detail"),
    path("exports/<int:export_id>/cancel", views.ExportCancelView.as_view(), name="export-cancel"),
    path("exports/<int:export_id>/download", views.ExportDownloadView.as_view(), name="export-download"),
]
