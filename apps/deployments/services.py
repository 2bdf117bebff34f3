"""Every write to deployments: create (the deploy flow), settings and secrets, pause and resume,
upgrade, delete, and the runtime's verdict on whether a deployment can start. Each runs in one
transaction with its audit event; the start check is dispatched after the commit."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from apps.accounts.permissions import has_permission
from apps.audit.services import audit_record
from apps.core.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.deployments.models import Deployment, DeploymentSecret
from apps.deployments.settings_schema import check_settings, secret_names
from apps.marketplace.models import BlueprintVersion
from apps.marketplace.selectors import blueprint_detail, deployable_version, recommended_version
from apps.marketplace.services import blueprint_install_record
from apps.runtime.selection import BASE_URL_SETTING, choose_provider
from apps.tenants.db import connection
from apps.tenants.models import Tenant

Status = Deployment.Status
# Deployments that count against the plan's limit of active deployments.
COUNTED_STATUSES = (Status.CONFIGURING, Status.ACTIVE, Status.ERROR)
_QUOTA_LOCK = 0x64657031  # pg_advisory_xact_lock class: "dep1"


def _require(actor: Any, permission: str) -> None:
    if not has_permission(actor, permission):
        raise Forbidden(_("Your role does not allow this."), details={"permission": permission})


def stored_secrets(deployment: Deployment) -> dict[str, str]:
    """Plaintext secrets, for validation and the runtime only: never rendered or logged."""
    return {secret.name: secret.value for secret in deployment.secrets.all()}


def _base_url_problems(values: dict[str, Any]) -> dict[str, list[str]]:
    """A provider address the organisation chose must not point into the platform's own network
    (server-side request forgery), unless ``PROVIDER_ALLOW_PRIVATE_NETWORKS`` says it may."""
    problems: dict[str, list[str]] = {}
    for name in BASE_URL_SETTING.values():
        url = values.get(name)
        if not url:
            continue
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems[name] = [_("Enter an http:// or https:// address.")]
        elif not settings.PROVIDER_ALLOW_PRIVATE_NETWORKS and not _host_is_public(parts.hostname):
            problems[name] = [_("The address must be reachable on the public internet.")]
    return problems


def _host_is_public(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_global for info in infos)


def _settings_or_error(
    version: BlueprintVersion, submitted: dict[str, Any], secrets: dict[str, str] | None = None
) -> Any:
    checked = check_settings(version.settings_schema, submitted, stored_secrets=secrets)
    for name, problems in _base_url_problems(checked.values).items():
        checked.errors.setdefault(name, []).extend(problems)
    if not checked.ok:
        raise InvalidInput(
            _("Some settings are not valid."), code="invalid_settings", details=checked.errors
        )
    return checked


def _quota_check(tenant: Tenant, *, exclude: Deployment | None = None) -> None:
    """Refuse when the plan's limit of active deployments is reached. The advisory lock (per
    schema, until commit) makes two concurrent deploys count one after the other."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", [_QUOTA_LOCK]
        )
    plan = tenant.plan
    limit = plan.max_active_deployments if plan is not None else None
    if plan is None or limit is None:
        return
    counted = Deployment.objects.filter(status__in=COUNTED_STATUSES)
    if exclude is not None:
        counted = counted.exclude(pk=exclude.pk)
    used = counted.count()
    if used >= limit:
        raise Forbidden(
            _(
                "Your plan allows %(limit)d active deployments and %(used)d are in use. Pause or "
                "delete one, or ask your tenant admin to upgrade the plan."
            )
            % {"limit": limit, "used": used},
            code="quota_exceeded",
            details={"limit": limit, "used": used, "plan": plan.code},
        )


def _unique_slug(name: str) -> str:
    base = slugify(name)[:56] or "agent"
    slug, n = base, 1
    live = Deployment.objects.exclude(status=Status.DELETED)
    while live.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput(
            _("Give the deployment a name."),
            details={"name": [_("A name of 1 to 100 characters is required.")]},
        )
    return name


def _save_secrets(deployment: Deployment, secrets: dict[str, str]) -> None:
    now = timezone.now()
    for name, value in secrets.items():
        DeploymentSecret.objects.update_or_create(
            deployment=deployment, name=name, defaults={"value": value, "updated_at": now}
        )


def _dispatch_start(deployment: Deployment) -> None:
    """Start the deployment: at once on the offline provider, which needs nothing checked;
    through the start check (a background task after the commit) for a cloud provider."""
    from apps.deployments.tasks import deployment_start

    choice = choose_provider(
        provider=deployment.version.provider,
        model=deployment.version.model,
        secrets=stored_secrets(deployment),
        settings=deployment.settings,
    )
    if choice.offline:
        deployment.status, deployment.status_reason = Status.ACTIVE, ""
        deployment.save(update_fields=["status", "status_reason"])
        audit_record(
            action="deployment.started",
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"provider": "local"},
        )
        return
    deployment_start.delay_on_commit(deployment.pk)


def deployment_create(
    *,
    tenant: Tenant,
    actor: Any,
    blueprint_slug: str,
    name: str,
    settings: dict[str, Any],
    version: str | None = None,
    fallback_provider: str = "",
) -> Deployment:
    """The deploy flow: a version (default: the newest certified), a name and valid settings."""
    _require(actor, "deployments:manage")
    name = _name(name)
    chosen: BlueprintVersion | None
    if version:
        chosen = deployable_version(tenant=tenant, slug=blueprint_slug, version=version)
    else:
        chosen = recommended_version(blueprint_detail(tenant=tenant, slug=blueprint_slug))
    if chosen is None:
        raise Conflict(_("This blueprint has no version to deploy."), code="no_version")
    if fallback_provider not in Deployment.Fallback.values:
        raise InvalidInput(
            _("Choose a fallback provider from the list."),
            details={"fallback_provider": [_("Unknown provider.")]},
        )
    checked = _settings_or_error(chosen, settings)
    with transaction.atomic():
        _quota_check(tenant)
        try:
            with transaction.atomic():
                deployment = Deployment.objects.create(
                    name=name,
                    slug=_unique_slug(name),
                    blueprint_id=chosen.blueprint_id,
                    version=chosen,
                    settings=checked.values,
                    fallback_provider=fallback_provider,
                    owner=actor,
                )
        except IntegrityError:  # the same name deployed at the same moment
            raise Conflict(
                _("A deployment with this name was just created; choose another name."),
                code="name_taken",
            ) from None
        _save_secrets(deployment, checked.secrets)
        blueprint_install_record(version=chosen, tenant=tenant)
        audit_record(
            action="deployment.created",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={
                "blueprint": chosen.blueprint.slug,
                "version": chosen.version,
                "settings": checked.values,
                "secrets": sorted(checked.secrets),
            },
        )
        _dispatch_start(deployment)
    return deployment


def _live(deployment: Deployment) -> Deployment:
    locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if locked.status == Status.DELETED:
        raise Conflict(_("This deployment was deleted."), code="deployment_deleted")
    return locked


def deployment_update_settings(
    *, deployment: Deployment, actor: Any, settings: dict[str, Any], name: str | None = None
) -> Deployment:
    """Change settings. Empty secret fields keep their stored values; a new value replaces one
    (audited as "secret rotated", never with the value)."""
    _require(actor, "deployments:manage")
    with transaction.atomic():
        deployment = _live(deployment)
        checked = _settings_or_error(deployment.version, settings, stored_secrets(deployment))
        before = deployment.settings
        diff = {
            key: [before.get(key), checked.values.get(key)]
            for key in sorted(set(before) | set(checked.values))
            if before.get(key) != checked.values.get(key)
        }
        update = ["settings", "updated_at"]
        deployment.settings = checked.values
        if name is not None:
            deployment.name = _name(name)
            update.append("name")
        deployment.updated_at = timezone.now()
        restart = bool(checked.secrets) or deployment.status in (Status.ERROR, Status.CONFIGURING)
        if restart and deployment.status != Status.PAUSED:
            deployment.status, deployment.status_reason = Status.CONFIGURING, ""
            update += ["status", "status_reason"]
        deployment.save(update_fields=update)
        _save_secrets(deployment, checked.secrets)
        audit_record(
            action="deployment.settings_changed",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"changes": diff, "secrets_rotated": sorted(checked.secrets)},
        )
        if deployment.status == Status.CONFIGURING:
            _dispatch_start(deployment)
    return deployment


def deployment_secret_rotate(
    *, deployment: Deployment, actor: Any, name: str, value: str
) -> Deployment:
    """Replace one secret without showing the old one."""
    _require(actor, "deployments:manage")
    if name not in secret_names(deployment.version.settings_schema):
        raise InvalidInput(
            _("This deployment has no secret setting of that name."),
            details={"name": [_("Unknown secret setting.")]},
        )
    if not (value or "").strip():
        raise InvalidInput(
            _("Enter the new secret value."), details={"value": [_("This field is required.")]}
        )
    return deployment_update_settings(
        deployment=deployment, actor=actor, settings={**deployment.settings, name: value.strip()}
    )


def deployment_pause(*, deployment: Deployment, actor: Any) -> Deployment:
    _require(actor, "deployments:operate")
    with transaction.atomic():
        deployment = _live(deployment)
        if deployment.status == Status.PAUSED:
            return deployment
        before = deployment.status
        deployment.status, deployment.updated_at = Status.PAUSED, timezone.now()
        deployment.save(update_fields=["status", "updated_at"])
        audit_record(
            action="deployment.paused",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"from": before},
        )
    return deployment


def deployment_resume(*, deployment: Deployment, actor: Any, tenant: Tenant) -> Deployment:
    """Paused (or failed) deployments start again: the quota is checked, then the start check."""
    _require(actor, "deployments:operate")
    with transaction.atomic():
        deployment = _live(deployment)
        if deployment.status not in (Status.PAUSED, Status.ERROR):
            raise Conflict(
                _("Only a paused or failed deployment can be resumed."), code="not_paused"
            )
        if deployment.status == Status.PAUSED:
            _quota_check(tenant, exclude=deployment)
        before = deployment.status
        deployment.status, deployment.status_reason = Status.CONFIGURING, ""
        deployment.updated_at = timezone.now()
        deployment.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(
            action="deployment.resumed",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"from": before},
        )
        _dispatch_start(deployment)
    return deployment


def deployment_upgrade(
    *, deployment: Deployment, actor: Any, tenant: Tenant, version: str
) -> Deployment:
    """Move to another deployable version of the same blueprint. The current settings must fit
    the new version's schema; if they do not, nothing changes and the problems are listed."""
    _require(actor, "deployments:manage")
    with transaction.atomic():
        deployment = _live(deployment)
        target = deployable_version(tenant=tenant, slug=deployment.blueprint.slug, version=version)
        current = deployment.version
        if target.pk == current.pk:
            raise Conflict(_("The deployment already runs this version."), code="same_version")
        checked = check_settings(
            target.settings_schema,
            dict(deployment.settings),
            stored_secrets=stored_secrets(deployment),
        )
        if not checked.ok:
            raise Conflict(
                _("The current settings do not fit version %(version)s; change them first.")
                % {"version": target.version},
                code="settings_incompatible",
                details=checked.errors,
            )
        deployment.version = target
        deployment.settings = checked.values  # the new version's defaults filled in
        deployment.updated_at = timezone.now()
        deployment.save(update_fields=["version", "settings", "updated_at"])
        audit_record(
            action="deployment.upgraded",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"from": current.version, "to": target.version},
        )
    return deployment


def deployment_delete(*, deployment: Deployment, actor: Any) -> Deployment:
    """Soft delete: the row stays for usage history; its secrets are destroyed."""
    _require(actor, "deployments:manage")
    with transaction.atomic():
        deployment = _live(deployment)
        before = deployment.status
        deployment.secrets.all().delete()
        deployment.status, deployment.deleted_at = Status.DELETED, timezone.now()
        deployment.updated_at = timezone.now()
        deployment.save(update_fields=["status", "deleted_at", "updated_at"])
        audit_record(
            action="deployment.deleted",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"from": before},
        )
    return deployment


def deployment_started(*, deployment_id: int, error: str = "") -> Deployment | None:
    """The runtime's verdict (from the start task): active, or error with a reason to act on.
    Only a deployment still configuring is changed, so a late verdict cannot undo a pause."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
        if deployment is None or deployment.status != Status.CONFIGURING:
            return deployment
        deployment.status = Status.ERROR if error else Status.ACTIVE
        deployment.status_reason = error[:1000]
        deployment.updated_at = timezone.now()
        deployment.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(
            action="deployment.start_failed" if error else "deployment.started",
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"reason": error[:500]} if error else {},
        )
    return deployment


DOCUMENT_MAX_CHARS = 200_000
DOCUMENTS_PER_DEPLOYMENT = 50


def document_add(*, deployment: Deployment, actor: Any, title: str, content: str) -> Any:
    """A document the agent's knowledge search will also read (plain text or Markdown)."""
    _require(actor, "deployments:manage")
    title, content = (title or "").strip(), (content or "").strip()
    errors: dict[str, list[str]] = {}
    if not 1 <= len(title) <= 200:
        errors["title"] = [_("A title of 1 to 200 characters is required.")]
    if not content:
        errors["content"] = [_("The document is empty.")]
    elif len(content) > DOCUMENT_MAX_CHARS:
        errors["content"] = [
            _("A document has at most %(count)d characters.") % {"count": DOCUMENT_MAX_CHARS}
        ]
    if errors:
        raise InvalidInput(_("The document is not valid."), details=errors)
    with transaction.atomic():
        deployment = _live(deployment)
        if deployment.documents.count() >= DOCUMENTS_PER_DEPLOYMENT:
            raise Conflict(
                _("A deployment holds at most %(count)d documents; remove one first.")
                % {"count": DOCUMENTS_PER_DEPLOYMENT},
                code="too_many_documents",
            )
        document = deployment.documents.create(title=title, content=content)
        audit_record(
            action="deployment.document_added",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"document": document.pk, "title": title, "characters": len(content)},
        )
    return document


def document_remove(*, deployment: Deployment, actor: Any, document_id: int) -> None:
    _require(actor, "deployments:manage")
    with transaction.atomic():
        deployment = _live(deployment)
        document = deployment.documents.filter(pk=document_id).first()
        if document is None:
            raise NotFound(_("No such document."))
        title = document.title
        document.delete()
        audit_record(
            action="deployment.document_removed",
            actor=actor,
            target_type="deployments.deployment",
            target_id=deployment.pk,
            metadata={"document": document_id, "title": title},
        )
