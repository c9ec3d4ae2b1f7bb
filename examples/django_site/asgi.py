"""The ASGI application: Django for HTTP, the SocketRouter for WebSocket, side by side.

    uvicorn examples.django_site.asgi:application

The same split Channels' `ProtocolTypeRouter` makes, with nothing else of Channels: Django's
handler takes HTTP, the router takes WebSocket handshakes, and the lifespan (Django's handler
refuses that scope; the router starts and stops its backplane with it).
"""

from __future__ import annotations

import os

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.settings")
# First: it sets Django up, and the router's module imports the models.
django_application = get_asgi_application()

from .sockets import router  # noqa: E402


async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Send each connection to the app that speaks its protocol."""
    if scope["type"] == "http":
        await django_application(scope, receive, send)
    else:
        await router(scope, receive, send)
