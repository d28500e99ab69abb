"""WebSocket routes of every app."""

from django.urls import path

from gamification.consumers import PlayConsumer

websocket_urlpatterns = [
    path("ws/v1/play", PlayConsumer.as_asgi()),
]
