"""A minimal authenticated consumer: proves websocket routing, auth and schema selection."""

from __future__ import annotations

from typing import Any

from apps.accounts.selectors import user_identity
from apps.tenants.channels import CLOSE_UNAUTHENTICATED, TenantJsonConsumer


class WhoAmIConsumer(TenantJsonConsumer):
    """``/ws/whoami/``: tells a signed-in user who and where they are, on connect and on ping."""

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        await self.accept()
        await self._send_identity()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._send_identity()
        else:
            await self.send_json(
                {"type": "error", "code": "unknown_message", "message": 'Send {"type": "ping"}.'}
            )

    async def _send_identity(self) -> None:
        identity = await self.db(user_identity, user_id=self.scope["user"].pk)
        await self.send_json({"type": "identity", "tenant": self.tenant.slug, **identity})
