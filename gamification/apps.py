from django.apps import AppConfig


class GamificationConfig(AppConfig):
    """Campaigns, rounds, scoring, leaderboards, classrooms (the game-loop issue)."""

    name = "gamification"
