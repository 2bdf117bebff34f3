"""One ASGI application for HTTP and websockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.tenants.channels import TenantWebsocketStack  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The stack checks that Origin is the handshake's own host (not ALLOWED_HOSTS, which is
        # "*" in production), then resolves the tenant, session and user.
        "websocket": TenantWebsocketStack(URLRouter(websocket_urlpatterns)),
    }
)

# What was loaded to start (Django, the apps, their modules) lives as long as the process: kept
# out of the collector's full passes, which otherwise walk it all again and again while serving
# (pauses of tens of milliseconds under load). Fewer young-generation passes for the same reason.
gc.freeze()
gc.set_threshold(20_000, 20, 20)
