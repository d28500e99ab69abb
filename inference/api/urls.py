from django.urls import path

from . import views

urlpatterns = [
    path("tasks/<uuid:task_id>/suggest", views.SuggestView.as_view(), name="task-suggest"),
    path("tasks/<uuid:task_id>/initial-mask", views.InitialMaskView.as_view(), name="task-initial-mask"),
    path("tasks/<uuid:task_id>/embedding", views.TaskEmbeddingView.as_view(), name="task-embedding"),
    path("models/current", views.ModelCurrentView.as_view(), name="model-current"),
    path("models/decoders/<str:sha256>.onnx", views.DecoderDownloadView.as_view(), name="model-decoder"),
]
