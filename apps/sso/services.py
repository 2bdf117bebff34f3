"""Writes on SSO connections, and what an SSO sign-in does to the person signing in.

Every change is validated here and audited in the same transaction. The identity-provider
metadata is fetched server-side only when an admin saves a connection (never during sign-in), with
a timeout, a size limit, no redirects and, unless explicitly allowed, public HTTPS addresses only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from allauth.socialaccount.models import SocialAccount
from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from lxml import etree
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

from apps.accounts.models import TENANT_ROLES, Role, User
from apps.accounts.policy import security_policy_get
from apps.accounts.services import user_create
from apps.audit.services import Actor, audit_record
from apps.core.exceptions import Conflict, Forbidden, InvalidInput
from apps.sso.models import NAMEID_EMAIL, Connection

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
# allauth looks providers up by id before slugs: a connection must never shadow one.
RESERVED_SLUGS = frozenset({"saml", "openid_connect", "oidc", "new", "login", "metadata"})
METADATA_MAX_BYTES = 1024 * 1024
METADATA_TIMEOUT = (5, 10)  # connect, read (seconds)

# Highest privilege first: when several mapped groups match, the first role here wins.
ROLE_PRECEDENCE = (
    Role.TENANT_ADMIN,
    Role.DEVELOPER,
    Role.OPERATOR,
    Role.ANALYST,
    Role.AUDITOR,
    Role.MEMBER,
)
_MAPPING_KEYS = ("email", "first_name", "last_name", "groups")
_SECRET_FIELDS = frozenset({"oidc_client_secret"})
_EDITABLE = (
    "display_name",
    "enabled",
    "saml_entity_id",
    "saml_sso_url",
    "saml_slo_url",
    "saml_certificates",
    "saml_metadata_url",
    "saml_name_id_format",
    "allow_idp_initiated",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_client_secret",
    "oidc_scopes",
    "attribute_mapping",
    "jit_enabled",
    "trust_idp_email",
    "role_mapping",
    "default_role",
)


class SignInRefused(Forbidden):
    """An SSO sign-in the organisation's rules refuse; ``reason`` goes to the audit trail."""

    code = "sso_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, code="sso_refused")
        self.reason = reason


# --- Certificates and metadata -------------------------------------------------------------------


def certificate_normalise(text: str) -> str:
    """A PEM or bare base64 certificate as the one-line base64 DER body python3-saml wants.
    Raises ``ValueError`` when it is not an X.509 certificate."""
    body = re.sub(r"-----(BEGIN|END) CERTIFICATE-----", "", text or "")
    body = re.sub(r"\s+", "", body)
    try:
        der = base64.b64decode(body, validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a certificate") from exc
    return base64.b64encode(der).decode("ascii")


def certificate_fingerprint(body: str) -> str:
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def _certificates_from(value: Any) -> tuple[list[str], list[str]]:
    if isinstance(value, str):
        chunks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", value, re.S)
        items = chunks or [part for part in re.split(r"\n\s*\n", value) if part.strip()]
    else:
        items = [str(item) for item in (value or [])]
    certificates, errors = [], []
    for item in items:
        try:
            normalised = certificate_normalise(item)
        except ValueError:
            errors.append(_("One of the certificates is not a valid X.509 certificate."))
            continue
        if normalised not in certificates:
            certificates.append(normalised)
    return certificates, errors


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str
    slo_url: str
    certificates: list[str]


def saml_metadata_parse(xml: str | bytes) -> IdpMetadata:
    """Read an IdP's SAML metadata. DTDs and entities are refused by python3-saml's parser."""
    field_errors = {"saml_metadata": [_("This is not valid SAML metadata XML.")]}
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml)
    except (etree.XMLSyntaxError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(
            _("The identity provider's metadata is not valid XML."), details=field_errors
        ) from exc
    idp = parsed.get("idp") or {}
    if not idp.get("entityId") or not (idp.get("singleSignOnService") or {}).get("url"):
        raise InvalidInput(
            _("The metadata does not describe a SAML identity provider."),
            details={"saml_metadata": [_("No IdP entity ID or single sign-on URL was found.")]},
        )
    raw = list((idp.get("x509certMulti") or {}).get("signing") or [])
    if idp.get("x509cert"):
        raw.insert(0, idp["x509cert"])
    certificates, errors = _certificates_from(raw)
    if not certificates or errors:
        raise InvalidInput(
            _(
                "The metadata has no usable signing certificate, so responses could not be verified."
            ),
            details={"saml_metadata": [_("Add a signing certificate to the IdP's metadata.")]},
        )
    return IdpMetadata(
        entity_id=str(idp["entityId"]),
        sso_url=str(idp["singleSignOnService"]["url"]),
        slo_url=str((idp.get("singleLogoutService") or {}).get("url") or ""),
        certificates=certificates,
    )


def _url_problem(url: str, *, field_name: str) -> dict[str, list[str]]:
    try:
        URLValidator(schemes=["https", "http"])(url)
    except ValidationError:
        return {field_name: [_("Enter a valid URL.")]}
    if urlsplit(url).scheme != "https" and not settings.SSO_ALLOW_INSECURE_URLS:
        return {field_name: [_("Use an https:// address.")]}
    return {}


def _host_is_public(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return all(ipaddress.ip_address(info[4][0]).is_global for info in infos)


def saml_metadata_fetch(url: str) -> bytes:
    """GET the metadata document: no redirects, a timeout, at most 1 MiB."""
    problem = _url_problem(url, field_name="saml_metadata_url")
    if problem:
        raise InvalidInput(_("The metadata address is not acceptable."), details=problem)
    host = urlsplit(url).hostname or ""
    if not settings.SSO_ALLOW_PRIVATE_NETWORKS and not _host_is_public(host):
        raise InvalidInput(
            _("The metadata address must be reachable on the public internet."),
            details={"saml_metadata_url": [_("Private and local addresses are not fetched.")]},
        )
    unreachable = {"saml_metadata_url": [_("The metadata could not be downloaded.")]}
    try:
        with requests.get(
            url, timeout=METADATA_TIMEOUT, stream=True, allow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise InvalidInput(
                    _("The identity provider answered %(status)s for its metadata.")
                    % {"status": response.status_code},
                    details=unreachable,
                )
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > METADATA_MAX_BYTES:
                    raise InvalidInput(
                        _("The metadata document is larger than 1 MiB."),
                        details={"saml_metadata_url": [_("The document is too large.")]},
                    )
    except requests.RequestException as exc:
        raise InvalidInput(_("The metadata could not be downloaded."), details=unreachable) from exc
    return body


# --- Validation ----------------------------------------------------------------------------------


def _validate_role_mapping(value: Any) -> tuple[list[dict[str, str]], list[str]]:
    if not isinstance(value, list) or len(value) > 200:
        return [], [_("Give a list of at most 200 group and role pairs.")]
    rows, errors = [], []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"group", "role"}:
            errors.append(_("Each entry needs exactly a group and a role."))
            continue
        group, role = str(entry["group"]).strip(), str(entry["role"]).strip()
        if not group or len(group) > 255:
            errors.append(_("Group names must be 1 to 255 characters long."))
        elif role not in TENANT_ROLES:
            errors.append(_("“%(role)s” is not one of the organisation's roles.") % {"role": role})
        else:
            rows.append({"group": group, "role": role})
    return rows, errors


def _validate_attribute_mapping(value: Any) -> tuple[dict[str, list[str]], list[str]]:
    if not isinstance(value, dict) or not set(value) <= set(_MAPPING_KEYS):
        return {}, [_("Only email, first_name, last_name and groups can be mapped.")]
    result: dict[str, list[str]] = {}
    for key in _MAPPING_KEYS:
        names = value.get(key)
        if names is None:
            continue
        if isinstance(names, str):
            names = [part for part in re.split(r"[,\n]", names)]
        cleaned = [str(name).strip() for name in names if str(name).strip()]
        if not cleaned or any(len(name) > 255 for name in cleaned):
            return {}, [_("Give one or more attribute names for %(key)s.") % {"key": key}]
        result[key] = cleaned
    return result, []


def _validate(connection: Connection, *, creating: bool) -> None:
    errors: dict[str, list[str]] = {}
    if creating:
        if not SLUG_PATTERN.match(connection.slug) or "--" in connection.slug:
            errors["slug"] = [
                _(
                    "Use 3 to 40 lowercase letters, digits and single hyphens, starting with a "
                    "letter."
                )
            ]
        elif connection.slug in RESERVED_SLUGS:
            errors["slug"] = [_("This name is reserved. Choose another.")]
        elif Connection.objects.filter(slug=connection.slug).exists():
            errors["slug"] = [_("Another connection already uses this slug.")]
    if connection.protocol not in Connection.Protocol.values:
        errors["protocol"] = [_("Choose SAML 2.0 or OpenID Connect.")]
    connection.display_name = (connection.display_name or "").strip()
    if not connection.display_name:
        errors["display_name"] = [_("Enter the name people see on the sign-in button.")]
    if connection.default_role not in TENANT_ROLES:
        errors["default_role"] = [_("Choose one of the organisation's roles.")]
    rows, role_errors = _validate_role_mapping(connection.role_mapping)
    if role_errors:
        errors["role_mapping"] = role_errors
    connection.role_mapping = rows
    mapping, mapping_errors = _validate_attribute_mapping(connection.attribute_mapping or {})
    if mapping_errors:
        errors["attribute_mapping"] = mapping_errors
    connection.attribute_mapping = mapping

    if connection.protocol == Connection.Protocol.SAML:
        if not connection.saml_entity_id.strip():
            errors["saml_entity_id"] = [_("Enter the identity provider's entity ID.")]
        if not connection.saml_sso_url:
            errors["saml_sso_url"] = [_("Enter the identity provider's single sign-on URL.")]
        else:
            errors |= _url_problem(connection.saml_sso_url, field_name="saml_sso_url")
        if connection.saml_slo_url:
            errors |= _url_problem(connection.saml_slo_url, field_name="saml_slo_url")
        if not connection.saml_certificates:
            errors.setdefault("saml_certificates", []).append(
                _("Add the identity provider's signing certificate: responses must be signed.")
            )
    elif connection.protocol == Connection.Protocol.OIDC:
        if not connection.oidc_issuer:
            errors["oidc_issuer"] = [_("Enter the issuer URL.")]
        else:
            errors |= _url_problem(connection.oidc_issuer, field_name="oidc_issuer")
            issuer_host = urlsplit(connection.oidc_issuer).hostname or ""
            # Discovery and keys are fetched from the issuer at sign-in: never from our network.
            if (
                "oidc_issuer" not in errors
                and not settings.SSO_ALLOW_PRIVATE_NETWORKS
                and not _host_is_public(issuer_host)
            ):
                errors["oidc_issuer"] = [
                    _(
                        "The issuer must be reachable on the public internet; private and local addresses are refused."
                    )
                ]
        if not connection.oidc_client_id.strip():
            errors["oidc_client_id"] = [_("Enter the client ID.")]
        if not connection.oidc_client_secret:
            errors["oidc_client_secret"] = [_("Enter the client secret.")]
        if "openid" not in connection.oidc_scopes.split():
            errors["oidc_scopes"] = [_("The scopes must include openid.")]
    if errors:
        raise InvalidInput(_("The connection could not be saved."), details=errors)
    try:
        connection.full_clean(exclude=["slug"] if not creating else None, validate_unique=False)
    except ValidationError as exc:
        raise InvalidInput(
            _("The connection could not be saved."), details=exc.message_dict
        ) from exc


def _apply_saml_inputs(
    connection: Connection,
    *,
    certificates: Any,
    metadata_xml: str | bytes | None,
    fetch_metadata: bool,
) -> None:
    if certificates is not None:
        parsed, errors = _certificates_from(certificates)
        if errors:
            raise InvalidInput(
                _("The connection could not be saved."), details={"saml_certificates": errors}
            )
        connection.saml_certificates = parsed
    if not metadata_xml and fetch_metadata and connection.saml_metadata_url:
        metadata_xml = saml_metadata_fetch(connection.saml_metadata_url)
    if metadata_xml:
        metadata = saml_metadata_parse(metadata_xml)
        connection.saml_entity_id = metadata.entity_id
        connection.saml_sso_url = metadata.sso_url
        connection.saml_slo_url = metadata.slo_url
        connection.saml_certificates = metadata.certificates


def _describe(name: str, value: Any) -> Any:
    if name == "saml_certificates":
        return [certificate_fingerprint(body) for body in value or []]
    return value


# --- Connections ---------------------------------------------------------------------------------


def connection_create(
    *,
    actor: Any,
    protocol: str,
    slug: str,
    display_name: str,
    saml_metadata_xml: str | bytes | None = None,
    **fields: Any,
) -> Connection:
    """Create a connection. SAML settings come from ``saml_metadata_xml``, from the metadata at
    ``saml_metadata_url`` (fetched now), or from the individual fields."""
    unknown = set(fields) - set(_EDITABLE)
    if unknown:
        raise InvalidInput(
            _("Unknown connection settings."), details={k: [_("Unknown setting.")] for k in unknown}
        )
    certificates = fields.pop("saml_certificates", None)
    connection = Connection(
        protocol=protocol, slug=(slug or "").strip().lower(), display_name=display_name, **fields
    )
    if connection.protocol == Connection.Protocol.SAML:
        _apply_saml_inputs(
            connection,
            certificates=certificates,
            metadata_xml=saml_metadata_xml,
            fetch_metadata=True,
        )
    _validate(connection, creating=True)
    try:
        with transaction.atomic():
            connection.save(force_insert=True)
            audit_record(
                action="sso_connection.created",
                actor=actor,
                target_type="sso_connection",
                target_id=connection.pk,
                metadata={
                    "slug": connection.slug,
                    "protocol": connection.protocol,
                    "settings": {
                        name: "secret set"
                        if name in _SECRET_FIELDS and getattr(connection, name)
                        else _describe(name, getattr(connection, name))
                        for name in _EDITABLE
                        if name not in _SECRET_FIELDS or getattr(connection, name)
                    },
                },
            )
    except IntegrityError as exc:
        raise Conflict(
            _("Another connection already uses this slug."),
            details={"slug": [_("Another connection already uses this slug.")]},
        ) from exc
    return connection


def connection_update(
    *,
    actor: Any,
    connection: Connection,
    saml_metadata_xml: str | bytes | None = None,
    fetch_metadata: bool = False,
    **changes: Any,
) -> Connection:
    """Change a connection. ``oidc_client_secret``: empty or None keeps the stored secret, any
    other value replaces it (recorded as "secret replaced", never the value). The slug and the
    protocol cannot change: accounts are linked through the slug."""
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise InvalidInput(
            _("Unknown connection settings."), details={k: [_("Unknown setting.")] for k in unknown}
        )
    if not changes.get("oidc_client_secret"):
        changes.pop("oidc_client_secret", None)
    with transaction.atomic():
        current = Connection.objects.select_for_update().get(pk=connection.pk)
        before = {name: getattr(current, name) for name in _EDITABLE}
        certificates = changes.pop("saml_certificates", None)
        metadata_url_changed = (
            "saml_metadata_url" in changes
            and changes["saml_metadata_url"] != current.saml_metadata_url
        )
        for name, value in changes.items():
            setattr(current, name, value)
        if current.protocol == Connection.Protocol.SAML:
            _apply_saml_inputs(
                current,
                certificates=certificates,
                metadata_xml=saml_metadata_xml,
                fetch_metadata=fetch_metadata or metadata_url_changed,
            )
        _validate(current, creating=False)
        changed = [name for name in _EDITABLE if getattr(current, name) != before[name]]
        if not changed:
            return current
        current.save(update_fields=[*changed, "updated_at"])
        audit_record(
            action="sso_connection.changed",
            actor=actor,
            target_type="sso_connection",
            target_id=current.pk,
            metadata={
                "slug": current.slug,
                "changes": {
                    name: "secret replaced"
                    if name in _SECRET_FIELDS
                    else {
                        "before": _describe(name, before[name]),
                        "after": _describe(name, getattr(current, name)),
                    }
                    for name in changed
                },
            },
        )
    return current


def connection_set_enabled(*, actor: Any, connection: Connection, enabled: bool) -> Connection:
    return connection_update(actor=actor, connection=connection, enabled=enabled)


def connection_delete(*, actor: Any, connection: Connection) -> None:
    """Delete a connection and the account links made through it (a later connection with the
    same slug must not inherit them); the people themselves stay."""
    with transaction.atomic():
        links = SocialAccount.objects.filter(provider=connection.slug)
        linked = links.count()
        links.delete()
        pk, slug = connection.pk, connection.slug
        connection.delete()
        audit_record(
            action="sso_connection.deleted",
            actor=actor,
            target_type="sso_connection",
            target_id=pk,
            metadata={"slug": slug, "account_links_removed": linked},
        )


# --- Signing in ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who the identity provider says is signing in."""

    uid: str
    email: str
    email_verified: bool | None = None
    first_name: str = ""
    last_name: str = ""
    groups: list[str] = field(default_factory=list)


def role_for_groups(*, connection: Connection, groups: list[str]) -> str | None:
    """The role the connection's group mapping gives: the highest-privilege mapped role among the
    person's groups, else the default role; None when the connection maps no groups."""
    if not connection.role_mapping:
        return None
    member_of = set(groups)
    matched = {row["role"] for row in connection.role_mapping if row["group"] in member_of}
    for role in ROLE_PRECEDENCE:
        if role in matched:
            return str(role)
    return connection.default_role


def _refuse(reason: str) -> SignInRefused:
    messages = {
        "no_email": _("Your identity provider did not send an email address."),
        "email_conflict": _(
            "An account with your email address already exists here. Ask an administrator to "
            "link it to single sign-on."
        ),
        "jit_disabled": _(
            "You do not have an account in this organisation yet. Ask an administrator to "
            "invite you."
        ),
        "inactive": _("Your account in this organisation has been deactivated."),
    }
    return SignInRefused(messages[reason], reason=reason)


def sso_sign_in(*, connection: Connection, identity: Identity, account: SocialAccount) -> User:
    """Resolve the person an SSO sign-in is for: the account already linked to this identity, an
    existing account with the same address (only when the connection trusts the IdP's emails), or
    a new account (just-in-time, when enabled). Then apply the group → role mapping. Raises
    ``SignInRefused``; links and new accounts are saved only when everything succeeds."""
    actor = Actor.system(f"sso:{connection.slug}")
    created = linked = False
    with transaction.atomic():
        if account.pk:
            user = User.objects.select_for_update().get(pk=account.user_id)
        else:
            email = (identity.email or "").strip().lower()
            try:
                validate_email(email)
            except ValidationError as exc:
                raise _refuse("no_email") from exc
            existing = User.objects.filter(email__iexact=email).first()
            group_role = role_for_groups(connection=connection, groups=identity.groups)
            if existing is not None:
                if not connection.trust_idp_email or identity.email_verified is False:
                    raise _refuse("email_conflict")
                user, linked = existing, True
            elif not connection.jit_enabled:
                raise _refuse("jit_disabled")
            else:
                user = user_create(
                    email=email,
                    password=None,
                    role=group_role or connection.default_role,
                    full_name=f"{identity.first_name} {identity.last_name}".strip()[:150],
                    actor=actor,
                    email_verified=True,
                )
                created = True
            if not user.is_active:
                raise _refuse("inactive")
            account.user = user
            account.save()
        if not user.is_active:
            raise _refuse("inactive")
        role_change = _role_sync(user=user, connection=connection, groups=identity.groups)
        audit_record(
            action="sso.sign_in",
            actor=user,
            target_type="user",
            target_id=user.pk,
            metadata={
                "connection": connection.slug,
                "method": connection.protocol,
                "created": created,
                "linked_by_email": linked,
                "role": user.role,
                **({"role_change": role_change} if role_change else {}),
            },
        )
    return user


def _role_sync(*, user: User, connection: Connection, groups: list[str]) -> dict[str, str] | None:
    role = role_for_groups(connection=connection, groups=groups)
    if role is None or role == user.role:
        return None
    policy = security_policy_get()
    if policy.break_glass_user_id == user.pk:
        return {"kept": user.role, "because": "break_glass"}
    if (
        user.role == Role.TENANT_ADMIN
        and not User.objects.filter(role=Role.TENANT_ADMIN, is_active=True)
        .exclude(pk=user.pk)
        .exists()
    ):
        return {"kept": user.role, "because": "last_tenant_admin"}
    before = user.role
    user.role = role
    user.save(update_fields=["role"])
    audit_record(
        action="user.role_changed",
        actor=Actor.system(f"sso:{connection.slug}"),
        target_type="user",
        target_id=user.pk,
        metadata={"before": before, "after": role, "via": "sso", "connection": connection.slug},
    )
    return {"before": before, "after": role}


__all__ = [
    "NAMEID_EMAIL",
    "Identity",
    "IdpMetadata",
    "SignInRefused",
    "connection_create",
    "connection_delete",
    "connection_set_enabled",
    "connection_update",
    "role_for_groups",
    "saml_metadata_fetch",
    "saml_metadata_parse",
    "sso_sign_in",
]
