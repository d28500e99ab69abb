from django.urls import path

from . import classrooms, live_sessions, views

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
    # classrooms
    path("classes", classrooms.ClassroomListView.as_view(), name="class-list"),
    path("classes/join", classrooms.ClassJoinView.as_view(), name="class-join"),
    path("classes/<int:classroom_id>", classrooms.ClassroomDetailView.as_view(), name="class-detail"),
    path("classes/<int:classroom_id>/join-code", classrooms.JoinCodeRotateView.as_view(), name="class-join-code"),
    path("classes/<int:classroom_id>/pupils", classrooms.RosterView.as_view(), name="class-pupils"),
    path("classes/<int:classroom_id>/pupils/<int:pupil_id>", classrooms.MemberView.as_view(), name="class-pupil"),
    path(
        "classes/<int:classroom_id>/pupils/<int:pupil_id>/password",
        classrooms.PasswordResetView.as_view(),
        name="class-pupil-password",
    ),
    path(
        "classes/<int:classroom_id>/pupils/<int:pupil_id>/move", classrooms.MoveView.as_view(), name="class-pupil-move"
    ),
    path("classes/<int:classroom_id>/login-cards", classrooms.LoginCardsView.as_view(), name="class-login-cards"),
    path("classes/<int:classroom_id>/assignments", classrooms.AssignmentListView.as_view(), name="class-assignments"),
    path(
        "classes/<int:classroom_id>/assignments/<int:assignment_id>",
        classrooms.AssignmentDetailView.as_view(),
        name="class-assignment",
    ),
    path(
        "classes/<int:classroom_id>/assignments/<int:assignment_id>/export.<str:file_format>",
        classrooms.AssignmentExportView.as_view(),
        name="class-assignment-export",
    ),
    path("me/classes", classrooms.MyClassesView.as_view(), name="my-classes"),
    path("me/data", classrooms.MyDataView.as_view(), name="my-data"),
    # live sessions
    path("live-sessions", live_sessions.LiveSessionListView.as_view(), name="live-session-list"),
    path("live-sessions/join", live_sessions.LiveSessionJoinView.as_view(), name="live-session-join"),
    path("live-sessions/<uuid:session_id>", live_sessions.LiveSessionDetailView.as_view(), name="live-session-detail"),
    path(
        "live-sessions/<uuid:session_id>/control",
        live_sessions.LiveSessionControlView.as_view(),
        name="live-session-control",
    ),
    path(
        "live-sessions/<uuid:session_id>/rounds/<int:number>/submit",
        live_sessions.LiveSessionSubmitView.as_view(),
        name="live-session-submit",
    ),
    path(
        "live-sessions/<uuid:session_id>/rounds/<int:number>/overlay.png",
        live_sessions.LiveRoundOverlayView.as_view(),
        name="live-session-overlay",
    ),
    path(
        "live-sessions/<uuid:session_id>/report",
        live_sessions.LiveSessionReportView.as_view(),
        name="live-session-report",
    ),
]
