"""Links sent to people, built from the request so they carry the host and port they used."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

_PLACEHOLDER = "INVITATIONTOKEN"


def invitation_accept_url(request: HttpRequest) -> str:
    """The accept link with ``{token}`` to fill in (build_absolute_uri would escape the braces)."""
    path = reverse("accounts:invitation-accept", kwargs={"token": _PLACEHOLDER})
    return request.build_absolute_uri(path).replace(_PLACEHOLDER, "{token}")
