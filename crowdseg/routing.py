"""WebSocket routes of every app (the game's live events arrive with the game-loop issue)."""

websocket_urlpatterns: list = []
