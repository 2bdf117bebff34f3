"""The catalog API: search and detail on every host, reviews from inside organisations, publishing
and moderation on the public host, and an organisation's catalog policy on its own host."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.permissions import has_permission
from apps.core.api.base import ScopedViewSet
from apps.core.exceptions import InvalidInput, NotFound
from apps.marketplace import selectors, services
from apps.marketplace.api.serializers import (
    BlueprintDetailOutput,
    BlueprintListOutput,
    CatalogPolicyInput,
    CatalogPolicyOutput,
    PublishInput,
    PublishOutput,
    ReplyInput,
    ReportInput,
    ReportOutput,
    ResolveInput,
    ReviewCreateInput,
    ReviewOutput,
    ReviewUpdateInput,
    TransitionInput,
    VersionOutput,
)
from apps.marketplace.blueprint_file import MAX_FILE_BYTES, load_blueprint_file
from apps.marketplace.forms import CatalogSearchForm
from apps.marketplace.models import (
    Blueprint,
    BlueprintVersion,
    CatalogPolicy,
    Review,
    ReviewReport,
)
from apps.tenants.models import Tenant


def _tenant(request: Request) -> Tenant | None:
    tenant = getattr(request, "tenant", None)
    return tenant if isinstance(tenant, Tenant) else None


def _invalid_query(form: CatalogSearchForm) -> InvalidInput:
    return InvalidInput(
        _("The search parameters are not valid."),
        details={field: [str(e) for e in errors] for field, errors in form.errors.items()},
    )


@extend_schema_view(
    list=extend_schema(
        summary="Search the catalog",
        parameters=[
            OpenApiParameter("q", str, description="Words to search for; typos are tolerated."),
            OpenApiParameter("category", str),
            OpenApiParameter("pricing", str, enum=["free", "monthly", "per_message"]),
            OpenApiParameter("tag", str),
            OpenApiParameter("publisher", str, description="A publisher's slug."),
            OpenApiParameter("certified", bool),
            OpenApiParameter(
                "sort", str, enum=["relevance", "popularity", "rating", "newest", "name"]
            ),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description="At most 100."),
        ],
        responses=OpenApiTypes.OBJECT,
    ),
    retrieve=extend_schema(
        summary="One blueprint with its versions", responses=BlueprintDetailOutput
    ),
)
class BlueprintViewSet(ScopedViewSet):
    """The catalog as the caller's organisation sees it (its catalog policy applies)."""

    lookup_field = "slug"
    schema_model = Blueprint
    serializer_class = BlueprintListOutput
    permission_map = {
        "list": "catalog:read",
        "retrieve": "catalog:read",
        "trending": "catalog:read",
        "newest": "catalog:read",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return selectors.catalog_visible(tenant=_tenant(self.request))

    def list(self, request: Request) -> Response:
        form = CatalogSearchForm(request.query_params)
        if not form.is_valid():
            raise _invalid_query(form)
        query = form.to_query()
        page = selectors.catalog_search(tenant=_tenant(request), query=query)

        def link(number: int) -> str:
            params = request.query_params.copy()
            params["page"] = str(number)
            return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")

        return Response(
            {
                "count": page.count,
                "page": page.page,
                "pages": page.pages,
                "page_size": page.page_size,
                "next": link(page.page + 1) if page.has_next else None,
                "previous": link(page.page - 1) if page.has_previous else None,
                "results": BlueprintListOutput(page.results, many=True).data,
                "facets": {
                    name: [{"value": f.value, "label": f.label, "count": f.count} for f in values]
                    for name, values in page.facets.items()
                },
                "corrected": page.corrected,
            }
        )

    def retrieve(self, request: Request, slug: str) -> Response:
        blueprint = selectors.blueprint_detail(tenant=_tenant(request), slug=slug)
        return Response(BlueprintDetailOutput(blueprint).data)

    @extend_schema(
        summary="Most installed in the last 7 days", responses=BlueprintListOutput(many=True)
    )
    @action(detail=False, methods=["get"])
    def trending(self, request: Request) -> Response:
        rows = selectors.trending(tenant=_tenant(request))
        return Response(BlueprintListOutput(rows, many=True).data)

    @extend_schema(summary="Newest in the catalog", responses=BlueprintListOutput(many=True))
    @action(detail=False, methods=["get"])
    def newest(self, request: Request) -> Response:
        rows = selectors.newest(tenant=_tenant(request))
        return Response(BlueprintListOutput(rows, many=True).data)


class _ReviewListMixin:
    request: Any

    def _context(self) -> dict[str, Any]:
        return {"tenant": _tenant(self.request), "user": self.request.user}

    def scoped_queryset(self) -> QuerySet[Any]:
        visible = selectors.catalog_visible(tenant=_tenant(self.request), include_retired=True)
        rows = Review.objects.filter(hidden=False, blueprint__in=visible).select_related(
            "blueprint"
        )
        slug = self.request.query_params.get("blueprint")
        if slug:
            rows = rows.filter(blueprint__slug=slug)
        return rows.order_by("-updated_at", "-id")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), **self._context()}  # type: ignore[misc]


@extend_schema_view(
    list=extend_schema(
        summary="Reviews",
        parameters=[OpenApiParameter("blueprint", str, description="Only this blueprint's.")],
    ),
    retrieve=extend_schema(summary="One review"),
)
class ReviewViewSet(
    _ReviewListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet
):
    """Reviews and ratings. One review per person and blueprint; written from an organisation."""

    serializer_class = ReviewOutput
    schema_model = Review
    permission_map = {
        "list": "catalog:read",
        "retrieve": "catalog:read",
        "create": "reviews:write",
        "partial_update": "reviews:write",
        "destroy": "reviews:write",
        "report": "reviews:write",
    }

    def _review(self, pk: str) -> Review:
        try:
            review_id = int(pk)
        except ValueError:
            raise NotFound(_("No such review.")) from None
        return selectors.review_visible(tenant=_tenant(self.request), review_id=review_id)

    def _org(self) -> Tenant:
        tenant = _tenant(self.request)
        assert tenant is not None  # tenant hosts only
        return tenant

    @extend_schema(
        summary="Review a blueprint", request=ReviewCreateInput, responses={201: ReviewOutput}
    )
    def create(self, request: Request) -> Response:
        data = ReviewCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        blueprint = selectors.blueprint_detail(
            tenant=self._org(), slug=data.validated_data["blueprint"]
        )
        review = services.review_create(
            blueprint=blueprint,
            tenant=self._org(),
            user=request.user,
            rating=data.validated_data["rating"],
            text=data.validated_data.get("text", ""),
        )
        body = ReviewOutput(review, context=self._context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Edit your review", request=ReviewUpdateInput, responses=ReviewOutput)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = ReviewUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        review = services.review_update(
            review=self._review(pk),
            tenant=self._org(),
            user=request.user,
            rating=data.validated_data["rating"],
            text=data.validated_data.get("text", ""),
        )
        return Response(ReviewOutput(review, context=self._context()).data)

    @extend_schema(summary="Delete your review", responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.review_delete(review=self._review(pk), tenant=self._org(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Report a review to the moderators", request=ReportInput, responses={201: None}
    )
    @action(detail=True, methods=["post"])
    def report(self, request: Request, pk: str) -> Response:
        data = ReportInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.review_report(
            review=self._review(pk),
            tenant=self._org(),
            user=request.user,
            reason=data.validated_data["reason"],
        )
        return Response(
            {"detail": _("Thank you. The moderators will look at this review.")},
            status=status.HTTP_201_CREATED,
        )


@extend_schema_view(
    list=extend_schema(summary="Reviews"), retrieve=extend_schema(summary="One review")
)
class PublisherReviewViewSet(
    _ReviewListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet
):
    """Reviews seen from the public site, where publishers reply to them."""

    serializer_class = ReviewOutput
    schema_model = Review
    permission_map = {
        "list": "catalog:read",
        "retrieve": "catalog:read",
        "reply": "reviews:reply",
    }

    @extend_schema(
        summary="Reply as the blueprint's publisher", request=ReplyInput, responses=ReviewOutput
    )
    @action(detail=True, methods=["post"])
    def reply(self, request: Request, pk: str) -> Response:
        data = ReplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        review = services.review_reply(
            review=self.get_object(), actor=request.user, text=data.validated_data["text"]
        )
        return Response(ReviewOutput(review, context=self._context()).data)


@extend_schema_view(
    list=extend_schema(summary="Open review reports (the moderation queue)"),
    retrieve=extend_schema(summary="One review report"),
)
class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    serializer_class = ReportOutput
    schema_model = ReviewReport
    permission_map = {
        "list": "reviews:moderate",
        "retrieve": "reviews:moderate",
        "resolve": "reviews:moderate",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        if self.action == "list":
            return selectors.open_reports()
        return ReviewReport.objects.select_related("review", "review__blueprint", "tenant")

    @extend_schema(
        summary="Hide the review or dismiss the report",
        request=ResolveInput,
        responses=ReportOutput,
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        data = ResolveInput(data=request.data)
        data.is_valid(raise_exception=True)
        report = services.report_resolve(
            report=self.get_object(), decision=data.validated_data["decision"], actor=request.user
        )
        return Response(ReportOutput(report).data)


class YamlParser(BaseParser):
    """A blueprint file sent as the request body, unparsed: the file loader reports its lines."""

    media_type = "application/yaml"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return {"content": stream.read(MAX_FILE_BYTES + 1)}


class TextYamlParser(YamlParser):
    media_type = "text/yaml"


class PublishViewSet(ScopedViewSet):
    """Publishing: send a blueprint file to create the blueprint or add a version (as a draft)."""

    schema_model = BlueprintVersion
    parser_classes = [JSONParser, YamlParser, TextYamlParser]
    permission_map = {"create": "blueprints:publish"}

    def scoped_queryset(self) -> QuerySet[Any]:
        return BlueprintVersion.objects.none()

    @extend_schema(
        summary="Publish a blueprint file",
        description="JSON `{content, dry_run}` or the YAML itself (`application/yaml`, with "
        "`?dry_run=true`). Invalid files get a 400 whose details list every problem with its "
        "line and column.",
        request=PublishInput,
        responses={201: PublishOutput, 200: PublishOutput},
    )
    def create(self, request: Request) -> Response:
        raw = request.data.get("content") if hasattr(request.data, "get") else None
        if isinstance(raw, bytes):
            content: Any = raw
            dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true", "yes")
        else:
            data = PublishInput(data=request.data)
            data.is_valid(raise_exception=True)
            content, dry_run = data.validated_data["content"], data.validated_data["dry_run"]
        spec = load_blueprint_file(content)
        result = services.blueprint_publish(spec=spec, actor=request.user, dry_run=dry_run)
        body = PublishOutput(result).data
        if dry_run:
            body["version_id"] = None
        return Response(body, status=status.HTTP_200_OK if dry_run else status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="Versions you may manage"),
    retrieve=extend_schema(summary="One version"),
)
class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Versions for their publishers (all of them for platform admins), and their lifecycle."""

    serializer_class = VersionOutput
    schema_model = BlueprintVersion
    permission_map = {
        "list": "catalog:read",
        "retrieve": "catalog:read",
        "release": "blueprints:publish",
        "transition": "blueprints:certify",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        rows = BlueprintVersion.objects.select_related(
            "blueprint", "replacement", "replacement__blueprint"
        ).prefetch_related("documents")
        user = self.request.user
        if has_permission(user, "blueprints:certify"):
            return rows.order_by("blueprint__slug", "-major", "-minor", "-patch", "-id")
        return rows.filter(Q(blueprint__publisher__members=user)).order_by(
            "blueprint__slug", "-major", "-minor", "-patch", "-id"
        )

    @extend_schema(summary="Release a draft as experimental", request=None, responses=VersionOutput)
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        version = services.version_transition(
            version=self.get_object(), to=BlueprintVersion.State.EXPERIMENTAL, actor=request.user
        )
        return Response(VersionOutput(version).data)

    @extend_schema(
        summary="Certify, roll back, deprecate or retire a version",
        request=TransitionInput,
        responses=VersionOutput,
    )
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str) -> Response:
        data = TransitionInput(data=request.data)
        data.is_valid(raise_exception=True)
        replacement = None
        if data.validated_data.get("replacement"):
            replacement = BlueprintVersion.objects.filter(
                pk=data.validated_data["replacement"]
            ).first()
            if replacement is None:
                raise InvalidInput(
                    _("No such replacement version."),
                    details={"replacement": [_("No such version.")]},
                )
        version = services.version_transition(
            version=self.get_object(),
            to=data.validated_data["to"],
            actor=request.user,
            sunset_date=data.validated_data.get("sunset_date"),
            replacement=replacement,
            note=data.validated_data.get("note", ""),
        )
        return Response(VersionOutput(version).data)


class CatalogPolicyViewSet(ScopedViewSet):
    """What the organisation's members see and may deploy."""

    schema_model = CatalogPolicy
    permission_map = {"retrieve": "catalog:manage", "update": "catalog:manage"}

    def scoped_queryset(self) -> QuerySet[Any]:
        return CatalogPolicy.objects.filter(tenant=_tenant(self.request))

    def _current(self) -> CatalogPolicy:
        tenant = _tenant(self.request)
        assert tenant is not None
        return selectors.catalog_policy_of(tenant) or CatalogPolicy(tenant=tenant)

    @extend_schema(summary="The organisation's catalog policy", responses=CatalogPolicyOutput)
    def retrieve(self, request: Request) -> Response:
        return Response(CatalogPolicyOutput(self._current()).data)

    @extend_schema(
        summary="Replace the catalog policy",
        request=CatalogPolicyInput,
        responses=CatalogPolicyOutput,
    )
    def update(self, request: Request) -> Response:
        data = CatalogPolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = _tenant(request)
        assert tenant is not None
        policy = services.catalog_policy_update(
            tenant=tenant,
            actor=request.user,
            mode=data.validated_data["mode"],
            blueprint_slugs=data.validated_data.get("blueprints", []),
            publisher_slugs=data.validated_data.get("publishers", []),
            categories=data.validated_data.get("categories", []),
        )
        return Response(CatalogPolicyOutput(policy).data)
