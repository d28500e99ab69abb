from django.urls import path

from . import views

urlpatterns = [
    path("datasets/<int:dataset_id>/jobs", views.DatasetJobsView.as_view(), name="dataset-jobs"),
    path("jobs/<int:job_id>", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/resume", views.JobResumeView.as_view(), name="job-resume"),
]
