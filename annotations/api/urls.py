from django.urls import path

from . import views

urlpatterns = [
    path("datasets", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/label-classes", views.LabelClassCreateView.as_view(), name="labelclass-create"),
    path("datasets/<int:dataset_id>/images", views.DatasetImagesView.as_view(), name="dataset-images"),
    path("tasks/<uuid:task_id>/gold", views.TaskGoldView.as_view(), name="task-gold"),
]
