"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Apps add WebSocket routes to ``websocket_urlpatterns`` in ``crowdseg/routing.py``.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowdseg.settings.local")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402
from .ws_auth import authenticated  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(authenticated(URLRouter(websocket_urlpatterns))),
    }
)
