"""The role matrix, exhaustively: every route of both URLconfs, with every role, allowed or denied.

Routes are enumerated from the URLconfs, so a new endpoint cannot escape: DRF viewsets declare
their permissions (``permission_map``) and are checked against ``MATRIX``; every other route must
match a rule in ``PAGE_RULES`` or this test fails and asks for one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context

from apps.accounts.models import Role
from apps.accounts.permissions import MATRIX
from apps.accounts.services import user_create
from tests.conftest import PASSWORD

TENANT_ROLES = ["tenant_admin", "developer", "operator", "analyst", "auditor", "member", None]
PLATFORM_ROLES = ["platform_admin", "publisher", None]

# How routes that are not API viewsets are governed, first match wins.
#   public      anyone, signed in or not, gets an answer (no 401/403, never a 500)
#   signed_in   any active user of the organisation; anonymous visitors are sent to sign in
#   admin:<p>   the admin site, for holders of permission <p>; others are sent to its sign-in
#   auth_flow   sign-in, sign-out, MFA and SSO pages: never a 500 for anyone
#   admin_readonly  behind the admin gate, but refused (403) even to admins: adding audit events,
#               API keys or tenants, and the autocomplete endpoint without its parameters
#   view        a page decorated with permission_required: the permission it declares decides
#   view        a page decorated with permission_required: the permission it declares decides
#   home        the site's start page (the workspace home needs sign-in; the landing page does not)
#   api:<p>     a non-DRF API view: 401 without credentials, 403 without <p>
#   bearer_only an API that takes only Bearer keys: every session caller gets 401
PAGE_RULES: list[tuple[str, str]] = [
    (r"^(healthz|readyz|metrics)$", "public"),
    (r"^i18n/", "public"),
    (r"^api/(schema|docs)/$", "public"),
    (r"^api/v1/tenant/$", "public"),
    (r"^signup/$", "public"),
    (r"^accounts/", "auth_flow"),
    (r"^admin/(login|logout)/$", "auth_flow"),
    (
        r"^admin/(audit/auditevent|accounts/apikey|tenants/tenant"
        r"|marketplace/(blueprint|blueprintversion|review|reviewreport)|deployments/deployment)"
        r"/add/$",
        "admin_readonly",
    ),
    (r"^admin/autocomplete/$", "admin_readonly"),
    (r"^admin/", "admin"),
    (r"^people/invitations/accept/", "public"),  # the signed token is the credential
    (r"^people/", "view"),
    (r"^sso/", "view"),
    (r"^marketplace/", "view"),
    (r"^deployments/", "view"),
    (r"^chat/", "view"),
    # A plain async view (Server-Sent Events) that checks the permission it declares itself.
    (r"^api/v1/deployments/.+/messages/stream/$", "api:chat:use"),
    # The OpenAI-compatible API accepts only Bearer API keys, never the session.
    (r"^v1/", "bearer_only"),
    (r"^$", "home"),
]


# The intended permission of every API action (docs/security/rbac.md). A viewset's permission_map
# must say the same: loosening one means changing this table too, in review.
EXPECTED_API_PERMISSIONS = {
    "AuditEventViewSet.list": "audit:read",
    "AuditEventViewSet.retrieve": "audit:read",
    "ApiKeyViewSet.list": "api_keys:own",
    "ApiKeyViewSet.create": "api_keys:own",
    "ApiKeyViewSet.retrieve": "api_keys:own",
    "ApiKeyViewSet.revoke": "api_keys:own",
    "MemberViewSet.list": "members:read",
    "MemberViewSet.retrieve": "members:read",
    "MemberViewSet.role": "members:manage",
    "MemberViewSet.deactivate": "members:manage",
    "MemberViewSet.reactivate": "members:manage",
    "MemberViewSet.destroy": "members:manage",
    "InvitationViewSet.list": "members:manage",
    "InvitationViewSet.retrieve": "members:manage",
    "InvitationViewSet.create": "members:manage",
    "InvitationViewSet.revoke": "members:manage",
    "TenantViewSet.list": "tenants:read",
    "TenantViewSet.retrieve": "tenants:read",
    "TenantViewSet.create": "tenants:manage",
    "TenantViewSet.suspend": "tenants:manage",
    "TenantViewSet.resume": "tenants:manage",
    "TenantViewSet.destroy": "tenants:manage",
    "BlueprintViewSet.list": "catalog:read",
    "BlueprintViewSet.retrieve": "catalog:read",
    "BlueprintViewSet.trending": "catalog:read",
    "BlueprintViewSet.newest": "catalog:read",
    "ReviewViewSet.list": "catalog:read",
    "ReviewViewSet.retrieve": "catalog:read",
    "ReviewViewSet.create": "reviews:write",
    "ReviewViewSet.partial_update": "reviews:write",
    "ReviewViewSet.destroy": "reviews:write",
    "ReviewViewSet.report": "reviews:write",
    "PublisherReviewViewSet.list": "catalog:read",
    "PublisherReviewViewSet.retrieve": "catalog:read",
    "PublisherReviewViewSet.reply": "reviews:reply",
    "ReportViewSet.list": "reviews:moderate",
    "ReportViewSet.retrieve": "reviews:moderate",
    "ReportViewSet.resolve": "reviews:moderate",
    "PublishViewSet.create": "blueprints:publish",
    "VersionViewSet.list": "catalog:read",
    "VersionViewSet.retrieve": "catalog:read",
    "VersionViewSet.release": "blueprints:publish",
    "VersionViewSet.transition": "blueprints:certify",
    "CatalogPolicyViewSet.retrieve": "catalog:manage",
    "CatalogPolicyViewSet.update": "catalog:manage",
    "DeploymentViewSet.list": "deployments:read",
    "DeploymentViewSet.retrieve": "deployments:read",
    "DeploymentViewSet.create": "deployments:manage",
    "DeploymentViewSet.partial_update": "deployments:manage",
    "DeploymentViewSet.destroy": "deployments:manage",
    "DeploymentViewSet.upgrade": "deployments:manage",
    "DeploymentViewSet.rotate_secret": "deployments:manage",
    "DeploymentViewSet.pause": "deployments:operate",
    "DeploymentViewSet.resume": "deployments:operate",
    "DeploymentViewSet.ask": "chat:use",
    "DeploymentViewSet.documents": "deployments:read",
    "DeploymentViewSet.add_document": "deployments:manage",
    "DeploymentViewSet.remove_document": "deployments:manage",
    "ConversationViewSet.list": "chat:use",
    "ConversationViewSet.retrieve": "chat:use",
    "ConversationViewSet.destroy": "chat:use",
    "ConversationViewSet.archive": "chat:use",
    "ConversationViewSet.unarchive": "chat:use",
    "ConversationViewSet.messages": "chat:use",
    "ConversationViewSet.export": "chat:use",
    "ConversationViewSet.retry": "chat:use",
    "DeploymentMessageViewSet.create": "chat:use",
}

# The public site's own rules, checked before PAGE_RULES: its catalog pages are open to anyone.
PLATFORM_PAGE_RULES: list[tuple[str, str]] = [(r"^marketplace/", "public")]


@dataclass(frozen=True)
class Route:
    pattern: str
    name: str | None
    callback: Any
    namespace: str | None

    @property
    def viewset(self) -> Any:
        return (
            getattr(self.callback, "cls", None) if getattr(self.callback, "actions", None) else None
        )


def _walk(patterns: list[Any], prefix: str = "", namespace: str | None = None) -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(
                entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace
            )
        elif isinstance(entry, URLPattern):
            yield Route(prefix + str(entry.pattern), entry.name, entry.callback, namespace)


def _concrete(pattern: str, values: dict[str, str]) -> str:
    path = pattern.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values.get(m.group(1), "1"), path)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "1"), path)
    return "/" + path


def _rule_for(pattern: str, extra_rules: list[tuple[str, str]] | None = None) -> str:
    for regex, rule in [*(extra_rules or []), *PAGE_RULES]:
        if re.search(regex, pattern.replace("^", "").replace("$", "") or ""):
            return rule
    raise AssertionError(f"No access rule for route {pattern!r}: add one to PAGE_RULES.")


def _client(host: str, email: str | None) -> Client:
    client = Client(HTTP_HOST=host)
    if email:
        response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
        assert response.status_code == 302, f"{email} could not sign in at {host}"
    return client


def _expect_viewset(role: str | None, permission: str | None, status: int) -> str | None:
    if role is None:
        expected_denied = permission is not None
        ok = status == 401 if expected_denied else status not in (401, 403)
    else:
        allowed = permission is None or permission in MATRIX[role]
        ok = status not in (401, 403) if allowed else status == 403
    return None if ok and status < 500 else f"got {status}"


def _check_view(role: str | None, permission: str, response: Any) -> str | None:
    status = response.status_code
    if role is None:
        return (
            None
            if status == 302 and "/accounts/login/" in response["Location"]
            else f"got {status}"
        )
    allowed = permission in MATRIX[role]
    # Allowed: the page (200), a POST action answered with a redirect (302) or an error (400), or
    # no such object (404) — the permission is checked before the object is looked up.
    ok = status in (200, 302, 400, 404) if allowed else status == 403
    return None if ok else f"got {status} (needs {permission})"


def _check_page(
    rule: str, role: str | None, admin_permission: str, response: Any, *, home_is_public: bool
) -> str | None:
    status = response.status_code
    if rule == "home" and home_is_public:
        rule = "public"
    if status >= 500:
        return f"server error {status}"
    if rule == "public":
        return None if status not in (401, 403) else f"got {status}"
    if rule == "auth_flow":
        return None
    if rule == "bearer_only":
        return None if status == 401 else f"got {status} (sessions are not accepted)"
    if rule.startswith("api:"):
        permission = rule.removeprefix("api:")
        if role is None:
            return None if status == 401 else f"got {status}"
        allowed = permission in MATRIX[role]
        ok = status not in (401, 403) if allowed else status == 403
        return None if ok else f"got {status} (needs {permission})"
    if rule == "home":
        if role is None:
            return (
                None
                if status == 302 and "/accounts/login/" in response["Location"]
                else f"got {status}"
            )
        return None if status == 200 else f"got {status}"
    if rule in ("admin", "admin_readonly"):
        allowed = role is not None and admin_permission in MATRIX[role]
        if allowed and rule == "admin_readonly":
            return None if status == 403 else f"got {status}"
        if allowed:
            return (
                None
                if status in (200, 302) and "login" not in response.get("Location", "")
                else f"got {status}"
            )
        return (
            None if status == 302 and "/admin/login/" in response["Location"] else f"got {status}"
        )
    raise AssertionError(rule)


def _run_matrix(
    urlconf: str,
    host: str,
    users: dict[str | None, str | None],
    values: dict[str, dict[str, str]],
    admin_permission: str,
    *,
    home_is_public: bool = False,
    extra_rules: list[tuple[str, str]] | None = None,
) -> list[str]:
    failures: list[str] = []
    routes = list(_walk(get_resolver(urlconf).url_patterns))
    clients = {role: _client(host, email) for role, email in users.items()}
    for route in routes:
        viewset = route.viewset
        for role, client in clients.items():
            path = _concrete(route.pattern, values.get("*", {}) | values.get(str(role), {}))
            if viewset is not None:
                for method, action in list(route.callback.actions.items()):
                    name = f"{viewset.__name__}.{action}"
                    assert name in EXPECTED_API_PERMISSIONS, (
                        f"{name}: add its permission to the table"
                    )
                    permission = viewset.permission_map.get(action, "__unmapped__")
                    assert permission == EXPECTED_API_PERMISSIONS[name], (
                        f"{name} needs {permission}"
                    )
                    response = getattr(client, method)(path, {}, content_type="application/json")
                    problem = _expect_viewset(role, permission, response.status_code)
                    if problem:
                        failures.append(
                            f"{method.upper()} {path} as {role}: {problem} (needs {permission})"
                        )
                continue
            rule = _rule_for(route.pattern, extra_rules)
            if "<" in route.pattern and rule == "admin":
                continue  # object pages go through the same admin_view gate as the lists below
            response = client.get(path)
            if rule == "view" and response.status_code == 405:
                response = client.post(path, {})  # a POST-only action: empty form, nothing changes
            if rule == "view":
                permission = getattr(route.callback, "required_permission", None)
                assert permission, f"{route.pattern}: decorate the view with permission_required"
                problem = _check_view(role, permission, response)
            else:
                problem = _check_page(
                    rule, role, admin_permission, response, home_is_public=home_is_public
                )
            if problem:
                failures.append(f"GET {path} ({rule}) as {role}: {problem}")
    return failures


def test_every_tenant_route_with_every_role(db, acme):
    emails: dict[str | None, str | None] = {
        "tenant_admin": acme.admin_email,
        "member": acme.member_emails[0],
        "auditor": f"auditor@{acme.slug}.example",
        None: None,
    }
    with schema_context(acme.schema):
        for new_role in ("developer", "operator", "analyst"):
            new_email = f"{new_role}@{acme.slug}.example"
            emails[new_role] = new_email
            user_create(email=new_email, password=PASSWORD, role=new_role, email_verified=True)
    # Object routes address an id that exists nowhere: the permission is checked before the
    # lookup, so allowed roles get 404 and denied ones 403, and no action changes anything.
    values = {"*": {"pk": "999999", "verb": "role"}}

    failures = _run_matrix("config.urls_tenants", acme.host, emails, values, "members:manage")
    assert failures == [], "\n".join(failures)


def test_every_platform_route_with_every_role(db, acme):
    emails: dict[str | None, str | None] = {
        "platform_admin": "platform@agentfactory.example",
        "publisher": "publisher@agentfactory.example",
        None: None,
    }
    values = {"*": {"slug": "no-such-org", "pk": "999999"}}  # see the tenant test above
    failures = _run_matrix(
        "config.urls_public",
        "localhost",
        emails,
        values,
        "tenants:manage",
        home_is_public=True,
        extra_rules=PLATFORM_PAGE_RULES,
    )
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("role", [r for r in Role.values])
def test_the_documented_matrix_is_the_enforced_one(role):
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / "docs/security/rbac.md").read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("| permission | tenant_admin")
    )
    header = lines[start]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    columns = [c.strip().strip("`") for c in header.strip("|").split("|")][1:]
    documented = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        permission = cells[0].strip("`")
        for column, cell in zip(columns, cells[1:], strict=True):
            if column == role and cell == "✓":
                documented.add(permission)
    assert documented == set(MATRIX[role])
