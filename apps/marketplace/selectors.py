"""Reads of the catalog, always through what the organisation may see.

``catalog_visible`` is the one place that applies visibility (public, or private to listed
organisations), moderation, the listing state and the organisation's catalog policy: search, detail
pages, the API, reviews and deployments all start from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.cache import platform_cache
from apps.core.exceptions import Conflict, NotFound
from apps.marketplace.models import (
    SEARCH_CONFIG,
    VISIBLE_VERSION_STATES,
    Blueprint,
    BlueprintVersion,
    CatalogPolicy,
    Category,
    Install,
    PricingModel,
    Publisher,
    Review,
    ReviewReport,
    Visibility,
)
from apps.marketplace.search import MAX_QUERY_WORDS, corrections, words_of
from apps.tenants.models import Tenant

TRENDING_WINDOW = timedelta(days=7)
SORTS = ("relevance", "popularity", "rating", "newest", "name")
FACET_TAGS = 20


def _catalog_tenant(tenant: Tenant | None) -> Tenant | None:
    """The public site sees the public catalog, as an anonymous visitor would."""
    if tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME:
        return None
    return tenant


def catalog_policy_of(tenant: Tenant | None) -> CatalogPolicy | None:
    tenant = _catalog_tenant(tenant)
    if tenant is None:
        return None
    return CatalogPolicy.objects.filter(tenant=tenant).first()


_UNKNOWN: Any = object()


def _visible_q(tenant: Tenant | None, policy: CatalogPolicy | None = _UNKNOWN) -> Q:
    tenant = _catalog_tenant(tenant)
    public = Q(visibility=Visibility.PUBLIC)
    if tenant is None:
        return public
    private_here = Q(visibility=Visibility.PRIVATE) & Q(
        Exists(
            Blueprint.allowed_tenants.through.objects.filter(
                blueprint_id=OuterRef("pk"), tenant_id=tenant.pk
            )
        )
    )
    if policy is _UNKNOWN:
        policy = catalog_policy_of(tenant)
    mode = policy.mode if policy else CatalogPolicy.Mode.ALL
    if mode == CatalogPolicy.Mode.PRIVATE_ONLY:
        return private_here
    if mode == CatalogPolicy.Mode.ALLOW_LIST:
        assert policy is not None
        allowed = (
            Q(pk__in=list(policy.blueprints.values_list("pk", flat=True)))
            | Q(publisher_id__in=list(policy.publishers.values_list("pk", flat=True)))
            | Q(category__in=list(policy.categories))
        )
        # An organisation's own private blueprints are always its to use.
        return (public & allowed) | private_here
    return public | private_here


def catalog_visible(
    *,
    tenant: Tenant | None,
    include_retired: bool = False,
    policy: CatalogPolicy | None = _UNKNOWN,
) -> QuerySet[Blueprint]:
    """Blueprints ``tenant``'s members may see (None: the public site). ``policy``, when the
    caller has already loaded it, saves a query."""
    states = [Blueprint.State.LISTED]
    if include_retired:
        states.append(Blueprint.State.RETIRED)
    return Blueprint.objects.filter(_visible_q(tenant, policy), state__in=states, hidden=False)


@dataclass(frozen=True)
class CatalogQuery:
    q: str = ""
    category: str = ""
    pricing: str = ""
    tag: str = ""
    publisher: str = ""
    certified: bool = False
    sort: str = "relevance"
    page: int = 1
    page_size: int = 20


@dataclass
class FacetValue:
    value: str
    label: str
    count: int


@dataclass
class CatalogPage:
    results: list[Blueprint]
    count: int
    page: int
    page_size: int
    facets: dict[str, list[FacetValue]]
    corrected: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _text_query(q: str) -> tuple[SearchQuery | None, dict[str, list[str]]]:
    words = words_of(q)[:MAX_QUERY_WORDS]
    if not words:
        return None, {}
    fixes = corrections(words)
    # Each word matches itself as a prefix or one of its likely corrections; all words must match.
    # Words are letters and digits only (words_of), so the tsquery text cannot be malformed.
    clauses = []
    for word in words:
        alternatives = [f"{word}:*", *fixes.get(word, [])]
        clauses.append("(" + " | ".join(alternatives) + ")")
    return SearchQuery(" & ".join(clauses), search_type="raw", config=SEARCH_CONFIG), fixes


def _filters(query: CatalogQuery, publisher_id: int | None) -> dict[str, Q]:
    filters: dict[str, Q] = {}
    if query.category:
        filters["category"] = Q(category=query.category)
    if query.pricing:
        filters["pricing"] = Q(pricing_model=query.pricing)
    if query.tag:
        filters["tag"] = Q(tags__contains=[query.tag])
    if query.publisher:
        filters["publisher"] = Q(publisher_id=publisher_id or 0)
    if query.certified:
        filters["certified"] = Q(certified=True)
    return filters


def _facet_key(
    tenant: Tenant | None,
    policy: CatalogPolicy | None,
    query: CatalogQuery,
    fixes: dict[str, list[str]],
) -> str:
    tenant = _catalog_tenant(tenant)
    stamp = policy.updated_at.timestamp() if policy else 0
    parts = [
        str(tenant.pk if tenant else 0),
        str(stamp),
        catalog_stamp(),
        " ".join(words_of(query.q)[:MAX_QUERY_WORDS]),
        repr(sorted(fixes.items())),
        query.category,
        query.pricing,
        query.tag,
        query.publisher,
        str(query.certified),
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"marketplace:facets:{digest}"


def catalog_search(*, tenant: Tenant | None, query: CatalogQuery) -> CatalogPage:
    """One page of the catalog for ``query``, with facet counts for every filter.

    Facets are disjunctive: the counts of one filter's values apply every other filter but not
    that one, so a person sees what choosing another value would give.
    """
    policy = catalog_policy_of(tenant)
    base = catalog_visible(tenant=tenant, policy=policy)
    search_query, fixes = _text_query(query.q)
    if search_query is not None:
        base = base.filter(search_vector=search_query)
    publisher_id = None
    if query.publisher:
        publisher_id = (
            Publisher.objects.filter(slug=query.publisher).values_list("pk", flat=True).first()
        )
    filters = _filters(query, publisher_id)
    facets, count = _facets(base, filters, _facet_key(tenant, policy, query, fixes))

    rows = base
    for condition in filters.values():
        rows = rows.filter(condition)
    order: list[Any]
    if query.sort == "relevance" and search_query is not None:
        rows = rows.annotate(rank=SearchRank(F("search_vector"), search_query))
        order = ["-rank", "-install_count"]
    elif query.sort == "rating":
        order = ["-rating_avg", "-rating_count"]
    elif query.sort == "newest":
        order = [F("published_at").desc(nulls_last=True)]
    elif query.sort == "name":
        order = ["name"]
    else:  # popularity, and relevance without words
        order = ["-install_count", "-rating_avg"]
    offset = (query.page - 1) * query.page_size
    results = list(
        rows.select_related("publisher")
        .defer("description", "description_html", "search_vector")
        .order_by(*order, "id")[offset : offset + query.page_size]
    )
    return CatalogPage(results, count, query.page, query.page_size, facets, fixes)


FACET_CACHE_SECONDS = 300


def catalog_stamp() -> str:
    """When what the catalog lists last changed: every listing change, state change and
    moderation updates ``updated_at`` (ratings and installs do not, and facets ignore them), so
    cached facet counts are never served for a catalog that has moved on."""
    latest = Blueprint.objects.aggregate(latest=Max("updated_at"))["latest"]
    return latest.isoformat() if latest else "-"


def _facets(
    base: QuerySet[Blueprint], filters: dict[str, Q], cache_key: str
) -> tuple[dict[str, Any], int]:
    raw = platform_cache().get(cache_key)
    if raw is None:
        raw = _facet_counts(base, filters)
        platform_cache().set(cache_key, raw, timeout=FACET_CACHE_SECONDS)
    dims, tags = raw["dims"], raw["tags"]
    if "category" in filters:
        count = dims["category"].get(_q_value(filters["category"]), 0)
    else:
        count = sum(dims["category"].values())
    publishers = {p.pk: p for p in Publisher.objects.filter(pk__in=list(dims["publisher"]))}
    labels_cat = dict(Category.choices)
    labels_price = dict(PricingModel.choices)
    result = {
        "category": [
            FacetValue(k, str(labels_cat.get(k, k)), n)
            for k, n in sorted(dims["category"].items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "pricing": [
            FacetValue(k, str(labels_price.get(k, k)), n)
            for k, n in sorted(dims["pricing"].items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "publisher": [
            FacetValue(publishers[k].slug, publishers[k].name, n)
            for k, n in sorted(dims["publisher"].items(), key=lambda kv: -kv[1])
            if k in publishers
        ],
        "certified": [FacetValue("true", _("Certified"), dims["certified"].get(True, 0))],
        "tag": [FacetValue(tag, tag, n) for tag, n in tags],
    }
    return result, count


def _facet_counts(base: QuerySet[Blueprint], filters: dict[str, Q]) -> dict[str, Any]:
    """All facet counts in two queries over the visible rows (dimensions by GROUPING SETS, tags
    by unnest), each filter counted through a FILTER clause."""
    columns = ("category", "pricing_model", "publisher_id", "certified", "tags")
    base_sql, base_params = _subquery_sql(base.order_by().values(*columns))
    dims = {
        "category": "category",
        "pricing": "pricing_model",
        "publisher": "publisher_id",
        "certified": "certified",
    }
    selects, params = [], []
    for name in dims:
        sql, p = _inline_condition(filters, skip=name)
        selects.append(f"count(*) FILTER (WHERE {sql}) AS n_{name}")
        params.extend(p)
    # Composed from our own SQL fragments; every value is a parameter.
    sql = " ".join(
        [
            "SELECT GROUPING(b.category), GROUPING(b.pricing_model), GROUPING(b.publisher_id),",
            "b.category, b.pricing_model, b.publisher_id, b.certified,",
            ", ".join(selects),
            f"FROM ({base_sql}) b",
            "GROUP BY GROUPING SETS ((b.category), (b.pricing_model), (b.publisher_id),",
            "(b.certified))",
        ]
    )
    counts: dict[str, dict[Any, int]] = {name: {} for name in dims}
    with connection.cursor() as cursor:
        cursor.execute(sql, list(base_params) if not params else params + list(base_params))
        for g_cat, g_price, g_pub, cat, price, pub, cert, n_cat, n_pr, n_pub, n_cert in cursor:
            if not g_cat:
                counts["category"][cat] = n_cat
            elif not g_price:
                counts["pricing"][price] = n_pr
            elif not g_pub:
                counts["publisher"][pub] = n_pub
            else:
                counts["certified"][cert] = n_cert
        tag_sql, tag_params = _inline_condition(filters, skip="tag")
        # The other filters go in WHERE (not a FILTER clause): tags counted 0 are dropped anyway,
        # and the rows never unnested are most of the work.
        cursor.execute(
            "SELECT tag, count(*) AS n FROM (SELECT unnest(b.tags) AS tag "  # noqa: S608
            f"FROM ({base_sql}) b WHERE {tag_sql}) t "
            "GROUP BY tag ORDER BY n DESC, tag LIMIT %s",
            list(base_params) + tag_params + [FACET_TAGS],
        )
        tags = cursor.fetchall()
    return {"dims": counts, "tags": [tuple(row) for row in tags]}


def _subquery_sql(qs: QuerySet[Any]) -> tuple[str, list[Any]]:
    sql, params = qs.query.get_compiler(using=qs.db).as_sql()
    return sql, list(params)


def _inline_condition(filters: dict[str, Q], *, skip: str) -> tuple[str, list[Any]]:
    """The filters other than ``skip`` as SQL over the alias ``b``."""
    parts: list[str] = []
    params: list[Any] = []
    for name, _q in filters.items():
        if name == skip:
            continue
        sql, p = _FILTER_SQL[name](_q)
        parts.append(sql)
        params.extend(p)
    return (" AND ".join(parts) or "TRUE"), params


def _q_value(q: Q) -> Any:
    (child,) = q.children
    assert isinstance(child, tuple)
    return child[1]


_FILTER_SQL = {
    "category": lambda q: ("b.category = %s", [_q_value(q)]),
    "pricing": lambda q: ("b.pricing_model = %s", [_q_value(q)]),
    "tag": lambda q: ("b.tags @> %s::varchar[]", [_q_value(q)]),
    "publisher": lambda q: ("b.publisher_id = %s", [_q_value(q)]),
    "certified": lambda q: ("b.certified", []),
}


def trending(*, tenant: Tenant | None, limit: int = 10) -> list[Blueprint]:
    """Most installed in the last seven days (ties: all-time installs)."""
    since = timezone.now() - TRENDING_WINDOW
    recent = (
        Install.objects.filter(blueprint_id=OuterRef("pk"), installed_at__gte=since)
        .order_by()
        .values("blueprint_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return list(
        catalog_visible(tenant=tenant)
        .annotate(recent_installs=Coalesce(Subquery(recent), 0))
        .filter(recent_installs__gt=0)
        .select_related("publisher")
        .order_by("-recent_installs", "-install_count", "id")[:limit]
    )


def newest(*, tenant: Tenant | None, limit: int = 10) -> list[Blueprint]:
    return list(
        catalog_visible(tenant=tenant)
        .select_related("publisher")
        .order_by(F("published_at").desc(nulls_last=True), "-id")[:limit]
    )


def blueprint_detail(*, tenant: Tenant | None, slug: str) -> Blueprint:
    """The blueprint with its visible versions (newest first) and their knowledge documents."""
    versions = BlueprintVersion.objects.filter(
        state__in=[*VISIBLE_VERSION_STATES, BlueprintVersion.State.RETIRED]
    ).select_related("replacement", "replacement__blueprint")
    blueprint = (
        catalog_visible(tenant=tenant, include_retired=True)
        .select_related("publisher")
        .prefetch_related(Prefetch("versions", queryset=versions, to_attr="visible_versions"))
        .filter(slug=slug)
        .first()
    )
    if blueprint is None:
        raise NotFound(_("No such blueprint."))
    return blueprint


def recommended_version(blueprint: Blueprint) -> BlueprintVersion | None:
    """The version a deployment defaults to: the newest certified, else the newest deployable."""
    versions: list[BlueprintVersion] = getattr(blueprint, "visible_versions", None) or list(
        blueprint.versions.filter(state__in=VISIBLE_VERSION_STATES)
    )
    deployable = [v for v in versions if v.state in VISIBLE_VERSION_STATES]
    certified = [v for v in deployable if v.state == BlueprintVersion.State.CERTIFIED]
    candidates = certified or deployable
    return candidates[0] if candidates else None


def deployable_version(*, tenant: Tenant, slug: str, version: str) -> BlueprintVersion:
    """The version ``tenant`` may deploy; retired, draft or invisible versions are refused."""
    blueprint = blueprint_detail(tenant=tenant, slug=slug)
    found = blueprint.versions.filter(version=version).first()
    if found is None or found.state == BlueprintVersion.State.DRAFT:
        raise NotFound(_("No such version."))
    if found.state == BlueprintVersion.State.RETIRED:
        raise Conflict(
            _("Version %(version)s is retired and can no longer be deployed.")
            % {"version": version},
            code="version_retired",
        )
    return found


def reviews_of(*, blueprint: Blueprint) -> QuerySet[Review]:
    return Review.objects.filter(blueprint=blueprint, hidden=False).order_by("-updated_at", "-id")


def review_of_user(*, blueprint: Blueprint, tenant: Tenant, user: Any) -> Review | None:
    return Review.objects.filter(blueprint=blueprint, tenant=tenant, user_id=user.pk).first()


def review_visible(*, tenant: Tenant | None, review_id: int) -> Review:
    """A review on a blueprint the caller may see ("missing" and "not yours to see" are alike)."""
    review = (
        Review.objects.filter(
            pk=review_id,
            hidden=False,
            blueprint__in=catalog_visible(tenant=tenant, include_retired=True),
        )
        .select_related("blueprint", "blueprint__publisher")
        .first()
    )
    if review is None:
        raise NotFound(_("No such review."))
    return review


def open_reports() -> QuerySet[ReviewReport]:
    return (
        ReviewReport.objects.filter(status=ReviewReport.Status.OPEN)
        .select_related("review", "review__blueprint", "tenant")
        .order_by("created_at")
    )
