from django.urls import path

from . import views

urlpatterns = [
    path("campaigns", views.CampaignListView.as_view(), name="campaign-list"),
    path("campaigns/<int:campaign_id>", views.CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<int:campaign_id>/join", views.CampaignJoinView.as_view(), name="campaign-join"),
    path("campaigns/<int:campaign_id>/rounds", views.RoundCreateView.as_view(), name="campaign-rounds"),
    path("campaigns/<int:campaign_id>/leaderboard", views.LeaderboardView.as_view(), name="campaign-leaderboard"),
    path("leaderboard", views.LeaderboardView.as_view(), name="leaderboard"),
    path("rounds/<uuid:round_id>", views.RoundDetailView.as_view(), name="round-detail"),
    path("rounds/<uuid:round_id>/tasks/<uuid:task_id>/submit", views.SubmitView.as_view(), name="round-submit"),
    path("submissions/batch", views.SubmissionBatchView.as_view(), name="submission-batch"),
    path("me/game", views.MyGameView.as_view(), name="my-game"),
]
