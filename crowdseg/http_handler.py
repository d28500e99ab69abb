"""The ASGI handler for HTTP: Django's, with each request's middleware and view run in one thread hop.

Our middleware and views are synchronous. Django's ``ASGIHandler`` builds the middleware chain for
async mode, so every synchronous piece of it (WhiteNoise, each ``MiddlewareMixin``'s
``process_request`` and ``process_response``, the view) is its own hop from the event loop to the
request thread and back: 16 for a plain API read. Each hop waits for the event loop, which under
load is busy with every other connection, so the hops, not the work, made up much of a request's time.

``SyncChainHandler`` builds the chain as under WSGI and runs it in one ``sync_to_async`` hop, on the
same thread-sensitive thread Django runs synchronous views on, so database connections and
transactions behave exactly as before. Reading the body, signals and sending the answer stay
Django's own.
"""

from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainHandler(ASGIHandler):
    def __init__(self) -> None:
        # Not ASGIHandler.__init__: it would build the async chain (and WhiteNoise's file index) first.
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def http_application() -> SyncChainHandler:
    """Set Django up and return the HTTP application (the counterpart of ``get_asgi_application``)."""
    django.setup(set_prefix=False)
    return SyncChainHandler()
