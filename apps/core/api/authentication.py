from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.api_keys import api_key_resolve
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record


class SessionAuthentication(authentication.SessionAuthentication):
    """Browser sessions, answering 401 (not 403) when no one is signed in, as API clients expect."""

    def authenticate_header(self, request: Request) -> str:
        return 'Session realm="api"'


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer af_…`` with a key of this organisation. The owner's current role
    and active status are honoured on every call: a deactivated owner's keys stop at once."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _sep, presented = header.partition(" ")
        if scheme != self.keyword:
            return None
        api_key = api_key_resolve(presented.strip())
        if api_key is None:
            # The prefix names the key without revealing it; the secret is never recorded.
            prefix = presented.strip()[:15]
            audit_record(
                action="auth.api_key_failed",
                actor=Actor.anonymous(),
                outcome=AuditEvent.Outcome.FAILURE,
                metadata={
                    "key_prefix": prefix if presented.startswith("af_") else "",
                    "path": request.path[:200],
                },
            )
            raise exceptions.AuthenticationFailed(
                _("The API key is invalid, expired or revoked, or its owner is deactivated.")
            )
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
