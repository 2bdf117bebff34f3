"""Deployment pages: the deploy flow from a blueprint, the list with health and usage, and one
deployment's settings, secrets, upgrade, pause, resume and delete."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from apps.accounts.decorators import permission_required
from apps.accounts.permissions import has_permission
from apps.core.exceptions import InvalidInput, NotFound, ServiceError
from apps.deployments import services
from apps.deployments.models import Deployment
from apps.deployments.selectors import deployment_get, deployment_stats, deployments_live
from apps.deployments.settings_schema import secret_names, settings_form_class
from apps.marketplace.models import VISIBLE_VERSION_STATES, BlueprintVersion
from apps.marketplace.selectors import blueprint_detail, recommended_version
from apps.runtime.selection import choose_provider
from apps.tenants.models import Tenant


def _tenant(request: HttpRequest) -> Tenant:
    tenant = getattr(request, "tenant", None)
    if not isinstance(tenant, Tenant):
        raise Http404
    return tenant


class DeployForm(forms.Form):
    version = forms.ChoiceField(label=gettext_lazy("Version"))
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    fallback_provider = forms.ChoiceField(
        label=gettext_lazy("When the provider is down"),
        choices=Deployment.Fallback.choices,
        required=False,
        help_text=gettext_lazy("Answer from another provider instead of failing."),
    )


def _version_label(version: BlueprintVersion) -> str:
    label = f"{version.version} · {version.get_state_display()}"
    if version.state == BlueprintVersion.State.DEPRECATED and version.sunset_date:
        label += " · " + _("sunset %(date)s") % {"date": version.sunset_date.isoformat()}
    return label


def _apply_errors(form: forms.Form, errors: dict[str, Any], fallback: str) -> None:
    for field, problems in errors.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            form.add_error(field if field in form.fields else None, str(problem))
    if not errors:
        form.add_error(None, fallback)


def _offline(version: BlueprintVersion, settings_data: dict[str, Any], secrets: set[str]) -> bool:
    stored = dict.fromkeys(secrets, "set")
    return choose_provider(
        provider=version.provider, model=version.model, secrets=stored, settings=settings_data
    ).offline


@permission_required("deployments:manage")
def deploy(request: HttpRequest, slug: str) -> HttpResponse:
    """Pick the version (the recommended one is preselected), name it, fill in its settings."""
    tenant = _tenant(request)
    try:
        blueprint = blueprint_detail(tenant=tenant, slug=slug)
    except NotFound:
        raise Http404 from None
    versions = [v for v in blueprint.visible_versions if v.state in VISIBLE_VERSION_STATES]  # type: ignore[attr-defined]
    recommended = recommended_version(blueprint)
    if recommended is None:
        messages.error(request, _("This blueprint has no version that can be deployed."))
        return redirect("marketplace:detail", slug=slug)
    by_number = {v.version: v for v in versions}
    chosen = by_number.get(request.POST.get("version") or request.GET.get("version") or "")
    chosen = chosen or recommended
    deploy_form = DeployForm(
        request.POST or None,
        initial={"version": chosen.version, "name": blueprint.name},
    )
    deploy_form.fields["version"].choices = [(v.version, _version_label(v)) for v in versions]  # type: ignore[attr-defined]
    settings_form = settings_form_class(chosen.settings_schema)(
        request.POST or None, prefix="settings"
    )
    # Switching the version re-renders the form for that version's settings, without saving.
    switching = request.method == "POST" and "switch_version" in request.POST
    status = 200
    if request.method == "POST" and not switching:
        valid = deploy_form.is_valid() & settings_form.is_valid()
        if valid:
            try:
                deployment = services.deployment_create(
                    tenant=tenant,
                    actor=request.user,
                    blueprint_slug=slug,
                    version=deploy_form.cleaned_data["version"],
                    name=deploy_form.cleaned_data["name"],
                    settings=settings_form.cleaned_data,
                    fallback_provider=deploy_form.cleaned_data.get("fallback_provider") or "",
                )
            except ServiceError as exc:
                target = settings_form if exc.code == "invalid_settings" else deploy_form
                _apply_errors(
                    target, exc.details if exc.code == "invalid_settings" else {}, exc.message
                )
                if exc.code != "invalid_settings" and "name" in exc.details:
                    deploy_form.add_error("name", exc.message)
            else:
                messages.success(request, _("%(name)s is deployed.") % {"name": deployment.name})
                return redirect("deployments:detail", pk=deployment.pk)
        status = 400
    if switching:
        deploy_form = DeployForm(
            initial={"version": chosen.version, "name": request.POST.get("name") or blueprint.name}
        )
        deploy_form.fields["version"].choices = [(v.version, _version_label(v)) for v in versions]  # type: ignore[attr-defined]
        settings_form = settings_form_class(chosen.settings_schema)(prefix="settings")
    return render(
        request,
        "deployments/deploy.html",
        {
            "blueprint": blueprint,
            "version": chosen,
            "deploy_form": deploy_form,
            "settings_form": settings_form,
            "offline_by_default": chosen.provider == "local"
            or bool(secret_names(chosen.settings_schema)),
        },
        status=status,
    )


@permission_required("deployments:read")
def deployment_list(request: HttpRequest) -> HttpResponse:
    rows = list(deployments_live().prefetch_related("secrets"))
    stats = deployment_stats([row.pk for row in rows])
    items = [
        {
            "deployment": row,
            "stats": stats.get(row.pk),
            "offline": _offline(row.version, row.settings, {s.name for s in row.secrets.all()}),
        }
        for row in rows
    ]
    return render(
        request,
        "deployments/list.html",
        {
            "items": items,
            "can_manage": has_permission(request.user, "deployments:manage"),
            "can_operate": has_permission(request.user, "deployments:operate"),
        },
    )


def _detail_context(request: HttpRequest, deployment: Deployment, **extra: Any) -> dict[str, Any]:
    stored = {s.name for s in deployment.secrets.all()}
    newer = [
        v
        for v in deployment.blueprint.versions.filter(state__in=VISIBLE_VERSION_STATES)
        if v.pk != deployment.version_id
    ]
    context = {
        "deployment": deployment,
        "stats": deployment_stats([deployment.pk]).get(deployment.pk),
        "offline": _offline(deployment.version, deployment.settings, stored),
        "stored_secrets": sorted(stored),
        "other_versions": newer,
        "failures": deployment.failures.all()[:10],
        "documents": deployment.documents.all(),
        "can_manage": has_permission(request.user, "deployments:manage"),
        "can_operate": has_permission(request.user, "deployments:operate"),
        "settings_form": settings_form_class(
            deployment.version.settings_schema, stored_secret_names=stored
        )(initial=deployment.settings, prefix="settings"),
    }
    context.update(extra)
    return context


@permission_required("deployments:read")
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        deployment = deployment_get(pk=pk)
    except NotFound:
        raise Http404 from None
    return render(request, "deployments/detail.html", _detail_context(request, deployment))


@require_POST
@permission_required("deployments:manage")
def deployment_settings(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        deployment = deployment_get(pk=pk)
    except NotFound:
        raise Http404 from None
    stored = {s.name for s in deployment.secrets.all()}
    form = settings_form_class(deployment.version.settings_schema, stored_secret_names=stored)(
        request.POST, prefix="settings"
    )
    if form.is_valid():
        try:
            services.deployment_update_settings(
                deployment=deployment, actor=request.user, settings=form.cleaned_data
            )
        except ServiceError as exc:
            _apply_errors(form, exc.details, exc.message)
        else:
            messages.success(request, _("The settings were saved."))
            return redirect("deployments:detail", pk=pk)
    context = _detail_context(request, deployment, settings_form=form)
    return render(request, "deployments/detail.html", context, status=400)


def _incompatible(exc: ServiceError) -> str:
    problems = [
        f"{field}: {' '.join(map(str, errs)) if isinstance(errs, list) else errs}"
        for field, errs in exc.details.items()
    ]
    return (
        " ".join([exc.message, *problems]) if exc.code == "settings_incompatible" else exc.message
    )


@require_POST
@permission_required("deployments:operate")
def deployment_operate(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Pause and resume."""
    try:
        deployment = deployment_get(pk=pk)
    except NotFound:
        raise Http404 from None
    try:
        if verb == "pause":
            services.deployment_pause(deployment=deployment, actor=request.user)
            messages.success(request, _("%(name)s is paused.") % {"name": deployment.name})
        elif verb == "resume":
            services.deployment_resume(
                deployment=deployment, actor=request.user, tenant=_tenant(request)
            )
            messages.success(request, _("%(name)s is starting.") % {"name": deployment.name})
        else:
            raise Http404
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("deployments:detail", pk=pk)


@require_POST
@permission_required("deployments:manage")
def deployment_manage(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Upgrade and delete."""
    try:
        deployment = deployment_get(pk=pk)
    except NotFound:
        raise Http404 from None
    try:
        if verb == "upgrade":
            services.deployment_upgrade(
                deployment=deployment,
                actor=request.user,
                tenant=_tenant(request),
                version=request.POST.get("version", ""),
            )
            messages.success(request, _("The deployment was upgraded."))
        elif verb == "delete":
            services.deployment_delete(deployment=deployment, actor=request.user)
            messages.success(request, _("%(name)s was deleted.") % {"name": deployment.name})
            return redirect("deployments:list")
        else:
            raise Http404
    except ServiceError as exc:
        messages.error(request, _incompatible(exc))
    return redirect("deployments:detail", pk=pk)


@require_POST
@permission_required("deployments:manage")
def deployment_documents(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a knowledge document (text pasted or a text file), or remove one."""
    try:
        deployment = deployment_get(pk=pk)
    except NotFound:
        raise Http404 from None
    try:
        if request.POST.get("remove"):
            services.document_remove(
                deployment=deployment, actor=request.user, document_id=int(request.POST["remove"])
            )
            messages.success(request, _("The document was removed."))
        else:
            upload = request.FILES.get("file")
            content = request.POST.get("content", "")
            if upload is not None:
                try:
                    content = upload.read(services.DOCUMENT_MAX_CHARS * 4 + 1).decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidInput(
                        _("Upload a text or Markdown file (UTF-8)."),
                        details={"file": [_("Not a text file.")]},
                    ) from None
            services.document_add(
                deployment=deployment,
                actor=request.user,
                title=request.POST.get("title", "") or (upload.name or "" if upload else ""),
                content=content,
            )
            messages.success(request, _("The document was added to the agent's knowledge."))
    except (ServiceError, ValueError) as exc:
        message = exc.message if isinstance(exc, ServiceError) else _("No such document.")
        details = exc.details if isinstance(exc, ServiceError) else {}
        problems = [str(p) for errors in details.values() for p in errors]
        messages.error(request, " ".join([message, *problems]))
    return redirect("deployments:detail", pk=pk)
