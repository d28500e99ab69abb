"""WebSocket authentication with the same credentials as the API.

Browsers send their session cookie (Channels' AuthMiddleware reads it); apps send the
``X-Session-Token`` header of allauth headless on the handshake, read here.
"""

from __future__ import annotations

from allauth.headless.internal.sessionkit import authenticate_by_x_session_token
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware


@database_sync_to_async
def _user_for_token(token: str):
    found = authenticate_by_x_session_token(token)
    return found[0] if found else None


class SessionTokenMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        token = headers.get(b"x-session-token")
        if token:
            user = await _user_for_token(token.decode("latin-1"))
            if user is not None:
                scope = {**scope, "user": user}
        return await super().__call__(scope, receive, send)


def authenticated(inner):
    """Cookie sessions first, then a session token in the headers overrides them."""
    return AuthMiddlewareStack(SessionTokenMiddleware(inner))
