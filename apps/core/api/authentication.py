from __future__ import annotations

from rest_framework import authentication
from rest_framework.request import Request


class SessionAuthentication(authentication.SessionAuthentication):
    """Browser sessions, answering 401 (not 403) when no one is signed in, as API clients expect."""

    def authenticate_header(self, request: Request) -> str:
        return 'Session realm="api"'
