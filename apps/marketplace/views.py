"""Marketplace pages: browse and search, a blueprint's page with its reviews, and the
organisation's catalog policy. The public site shows the same browse and detail pages to anyone."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.accounts.decorators import permission_required
from apps.accounts.permissions import has_permission
from apps.core.exceptions import NotFound, ServiceError
from apps.marketplace import selectors, services
from apps.marketplace.api.serializers import settings_fields
from apps.marketplace.forms import (
    SORT_LABELS,
    CatalogPolicyForm,
    CatalogSearchForm,
    ReportForm,
    ReviewForm,
)
from apps.marketplace.models import Blueprint, Category, PricingModel, Publisher
from apps.marketplace.selectors import CatalogQuery
from apps.tenants.models import Tenant

REVIEWS_PER_PAGE = 10


def _tenant(request: HttpRequest) -> Tenant | None:
    tenant = getattr(request, "tenant", None)
    return selectors._catalog_tenant(tenant) if isinstance(tenant, Tenant) else None


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in (*names, "partial"):
        params.pop(name, None)
    return params.urlencode()


def browse(request: HttpRequest) -> HttpResponse:
    form = CatalogSearchForm(request.GET or None)
    tenant = _tenant(request)
    page = None
    if form.is_bound and not form.is_valid():
        status = 400
    else:
        status = 200
        query = form.to_query() if form.is_bound else CatalogQuery()
        page = selectors.catalog_search(tenant=tenant, query=query)
    context: dict[str, Any] = {
        "form": form,
        "selects": _selects(form, page),
        "page": page,
        "query_without_page": _query_without(request, "page"),
        "query_without_tag": _query_without(request, "tag", "page"),
        "filtered": bool(request.GET and any(v for k, v in request.GET.items() if k != "sort")),
        "trending": selectors.trending(tenant=tenant, limit=5) if not request.GET else [],
        "newest": selectors.newest(tenant=tenant, limit=5) if not request.GET else [],
        "can_manage_policy": has_permission(request.user, "catalog:manage"),
        "policy": selectors.catalog_policy_of(tenant),
    }
    template = (
        "marketplace/_results.html"
        if request.headers.get("X-Requested-With") == "fetch"
        else "marketplace/browse.html"
    )
    return render(request, template, context, status=status)


def _selects(form: CatalogSearchForm, page: selectors.CatalogPage | None) -> list[dict[str, Any]]:
    """The filter drop-downs, each option with its facet count (none for sorting)."""
    facets = page.facets if page else {}
    current = form.data if form.is_bound else {}
    selects = []
    for name, label, choices in (
        ("category", _("Category"), [("", _("All categories")), *Category.choices]),
        ("pricing", _("Pricing"), [("", _("Any price")), *PricingModel.choices]),
        (
            "publisher",
            _("Publisher"),
            [("", _("Any publisher"))] + [(f.value, f.label) for f in facets.get("publisher", [])],
        ),
        ("sort", _("Sort by"), list(SORT_LABELS.items())),
    ):
        counts = {f.value: f.count for f in facets.get(name, [])}
        options = [
            {
                "value": value,
                "label": text,
                "count": counts.get(value, 0) if value and name != "sort" else None,
                "selected": current.get(name, "") == value,
            }
            for value, text in choices
        ]
        selects.append({"name": name, "label": label, "options": options})
    return selects


def detail(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(request)
    try:
        blueprint = selectors.blueprint_detail(tenant=tenant, slug=slug)
    except NotFound:
        raise Http404 from None
    own = None
    if tenant is not None and has_permission(request.user, "reviews:write"):
        own = selectors.review_of_user(blueprint=blueprint, tenant=tenant, user=request.user)
    form = ReviewForm(initial={"rating": own.rating, "text": own.text}) if own else ReviewForm()
    return _render_detail(request, blueprint, form=form, own=own)


def _render_detail(
    request: HttpRequest, blueprint: Blueprint, *, form: ReviewForm, own: Any, status: int = 200
) -> HttpResponse:
    tenant = _tenant(request)
    reviews = Paginator(selectors.reviews_of(blueprint=blueprint), REVIEWS_PER_PAGE)
    recommended = selectors.recommended_version(blueprint)
    can_review = tenant is not None and has_permission(request.user, "reviews:write")
    return render(
        request,
        "marketplace/detail.html",
        {
            "blueprint": blueprint,
            "versions": blueprint.visible_versions,  # type: ignore[attr-defined]
            "recommended": recommended,
            "settings_fields": settings_fields(recommended.settings_schema) if recommended else [],
            "review_page": reviews.get_page(request.GET.get("reviews")),
            "own_review": own,
            "can_review": can_review
            and blueprint.state != Blueprint.State.RETIRED
            and not (own and own.hidden),
            "review_form": form,
            "can_deploy": tenant is not None
            and recommended is not None
            and has_permission(request.user, "deployments:manage"),
            "report_form": ReportForm(),
            "stars": _star_rows(blueprint),
        },
        status=status,
    )


def _star_rows(blueprint: Blueprint) -> list[dict[str, Any]]:
    counts = dict.fromkeys(range(1, 6), 0)
    for rating in selectors.reviews_of(blueprint=blueprint).values_list("rating", flat=True):
        counts[rating] += 1
    total = sum(counts.values()) or 1
    return [
        {"stars": n, "count": counts[n], "percent": round(100 * counts[n] / total)}
        for n in range(5, 0, -1)
    ]


@require_POST
@permission_required("reviews:write")
def review_save(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(request)
    if tenant is None:
        raise Http404
    try:
        blueprint = selectors.blueprint_detail(tenant=tenant, slug=slug)
    except NotFound:
        raise Http404 from None
    form = ReviewForm(request.POST)
    own = selectors.review_of_user(blueprint=blueprint, tenant=tenant, user=request.user)
    if form.is_valid():
        try:
            if own is None:
                services.review_create(
                    blueprint=blueprint,
                    tenant=tenant,
                    user=request.user,
                    rating=form.cleaned_data["rating"],
                    text=form.cleaned_data["text"],
                )
                messages.success(request, _("Thank you for your review."))
            else:
                services.review_update(
                    review=own,
                    tenant=tenant,
                    user=request.user,
                    rating=form.cleaned_data["rating"],
                    text=form.cleaned_data["text"],
                )
                messages.success(request, _("Your review was updated."))
            return redirect("marketplace:detail", slug=slug)
        except ServiceError as exc:
            for field, errors in exc.details.items():
                for error in errors if isinstance(errors, list) else [errors]:
                    form.add_error(field if field in form.fields else None, str(error))
            if not exc.details:
                form.add_error(None, exc.message)
    return _render_detail(request, blueprint, form=form, own=own, status=400)


@require_POST
@permission_required("reviews:write")
def review_delete(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _tenant(request)
    if tenant is None:
        raise Http404
    try:
        blueprint = selectors.blueprint_detail(tenant=tenant, slug=slug)
    except NotFound:
        raise Http404 from None
    own = selectors.review_of_user(blueprint=blueprint, tenant=tenant, user=request.user)
    if own is None:
        raise Http404
    services.review_delete(review=own, tenant=tenant, user=request.user)
    messages.success(request, _("Your review was deleted."))
    return redirect("marketplace:detail", slug=slug)


@require_POST
@permission_required("reviews:write")
def review_report(request: HttpRequest, pk: int) -> HttpResponse:
    tenant = _tenant(request)
    if tenant is None:
        raise Http404
    try:
        review = selectors.review_visible(tenant=tenant, review_id=pk)
    except NotFound:
        raise Http404 from None
    form = ReportForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Say what is wrong with the review before reporting it."))
    else:
        try:
            services.review_report(
                review=review, tenant=tenant, user=request.user, reason=form.cleaned_data["reason"]
            )
            messages.success(request, _("Thank you. The moderators will look at this review."))
        except ServiceError as exc:
            messages.error(request, exc.message)
    return redirect("marketplace:detail", slug=review.blueprint.slug)


@permission_required("catalog:manage")
def policy(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    if tenant is None:
        raise Http404
    current = selectors.catalog_policy_of(tenant)
    public = Blueprint.objects.filter(state=Blueprint.State.LISTED, visibility="public")
    choices = {
        "blueprint_choices": [(b.slug, b.name) for b in public.order_by("name")],
        "publisher_choices": [(p.slug, p.name) for p in Publisher.objects.order_by("name")],
    }
    initial = {
        "mode": current.mode if current else "all",
        "blueprints": [b.slug for b in current.blueprints.all()] if current else [],
        "publishers": [p.slug for p in current.publishers.all()] if current else [],
        "categories": list(current.categories) if current else [],
    }
    form = CatalogPolicyForm(request.POST or None, initial=initial, **choices)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.catalog_policy_update(
                    tenant=tenant,
                    actor=request.user,
                    mode=form.cleaned_data["mode"],
                    blueprint_slugs=form.cleaned_data["blueprints"],
                    publisher_slugs=form.cleaned_data["publishers"],
                    categories=form.cleaned_data["categories"],
                )
                messages.success(request, _("The catalog policy was saved."))
                return redirect("marketplace:policy")
            except ServiceError as exc:
                form.add_error(None, exc.message)
        status = 400
    return render(request, "marketplace/policy.html", {"form": form}, status=status)
