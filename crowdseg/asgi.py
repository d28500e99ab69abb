"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Apps add WebSocket routes to ``websocket_urlpatterns`` in ``crowdseg/routing.py``.
"""

import gc
import os

from .http_handler import http_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowdseg.settings.local")
django_asgi_app = http_application()  # before importing anything that touches models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402
from .ws_auth import authenticated  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(authenticated(URLRouter(websocket_urlpatterns))),
    }
)


# What is loaded by now (Django, the apps, every view the URLconf imports) lives as long as the
# process. Frozen (~146,000 objects), it is left out of the collector's full passes, which otherwise
# walked it all and stalled every request in the process for 120-200 ms, several times a minute
# under load (bench/game_load.py). A larger youngest generation lets a request's objects die before
# a collection promotes them: in the same benchmark, GC time fell from 1.2 s to 0.55 s a minute per
# process and the full passes (up to 87 ms each, even after the freeze) stopped.
_ = get_resolver().url_patterns  # import the views now rather than on a first request
gc.freeze()
gc.set_threshold(7000, 10, 10)
