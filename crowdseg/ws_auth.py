"""WebSocket authentication with the same credentials as the API.

Browsers send their session cookie (Channels' AuthMiddleware reads it); apps send the
``X-Session-Token`` header of allauth headless on the handshake, checked here by the same
authentication class the API uses (allauth's public DRF integration), so a token is good on the
socket exactly when it is good on the API. A handshake whose token is invalid or expired, or whose
check fails, is refused (HTTP 403), never answered with an error page; without a token the cookie
decides, and the consumer refuses anonymous users.

Browsers cannot set headers on a WebSocket handshake, so a web app offers the token as a
subprotocol instead: ``new WebSocket(url, ["crowdseg.v1", "crowdseg.token." + token])``. It is
checked exactly like the header, then removed from the scope; the consumer answers with
``crowdseg.v1`` (never the token). Not in the query string: URLs end up in access logs.
"""

from __future__ import annotations

import logging

from allauth.headless.contrib.rest_framework.authentication import XSessionTokenAuthentication
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.http import HttpRequest

logger = logging.getLogger(__name__)

_authentication = XSessionTokenAuthentication()

PROTOCOL = "crowdseg.v1"  # the subprotocol a browser offers along with its token
TOKEN_PROTOCOL_PREFIX = "crowdseg.token."


@database_sync_to_async
def user_for_session_token(token: str):
    """The active user the token's session belongs to, or None for an unknown or expired token."""
    request = HttpRequest()
    request.META["HTTP_X_SESSION_TOKEN"] = token
    found = _authentication.authenticate(request)  # DRF's contract: (user, auth) or None
    return found[0] if found else None


class SessionTokenMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        token = headers.get(b"x-session-token")
        offered = scope.get("subprotocols") or []
        in_protocols = [p for p in offered if p.startswith(TOKEN_PROTOCOL_PREFIX)]
        if in_protocols:
            scope = {**scope, "subprotocols": [p for p in offered if not p.startswith(TOKEN_PROTOCOL_PREFIX)]}
            if token is None and len(in_protocols) == 1:
                token = in_protocols[0][len(TOKEN_PROTOCOL_PREFIX) :].encode("latin-1")
            elif token is None:
                token = b""  # two tokens: ambiguous, refused below
        if token is None:
            return await super().__call__(scope, receive, send)
        try:
            user = await user_for_session_token(token.decode("latin-1")) if token else None
        except Exception:
            # Whatever broke (the session store, the database), the client learns only "refused".
            logger.exception("WebSocket session token check failed")
            user = None
        if user is None or not user.is_authenticated:
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await super().__call__({**scope, "user": user}, receive, send)


def authenticated(inner):
    """Cookie sessions first, then a session token in the headers overrides them."""
    return AuthMiddlewareStack(SessionTokenMiddleware(inner))
