"""Input of the catalog pages and API: the search query string, reviews and the catalog policy."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.marketplace.models import CatalogPolicy, Category, PricingModel
from apps.marketplace.selectors import SORTS, CatalogQuery
from apps.marketplace.services import REVIEW_MAX_CHARS

MAX_PAGE_SIZE = 100
SORT_LABELS = {
    "relevance": _("Relevance"),
    "popularity": _("Most installed"),
    "rating": _("Best rated"),
    "newest": _("Newest"),
    "name": _("Name"),
}


class CatalogSearchForm(forms.Form):
    """The catalog's query string: every filter is a plain GET parameter, so URLs can be shared."""

    q = forms.CharField(label=_("Search"), required=False, max_length=200, strip=True)
    category = forms.ChoiceField(
        label=_("Category"), required=False, choices=[("", _("All categories")), *Category.choices]
    )
    pricing = forms.ChoiceField(
        label=_("Pricing"), required=False, choices=[("", _("Any price")), *PricingModel.choices]
    )
    tag = forms.SlugField(label=_("Tag"), required=False, max_length=30)
    publisher = forms.SlugField(label=_("Publisher"), required=False, max_length=60)
    certified = forms.BooleanField(label=_("Certified only"), required=False)
    sort = forms.ChoiceField(
        label=_("Sort by"),
        required=False,
        choices=[(key, SORT_LABELS[key]) for key in SORTS],
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)
    page_size = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

    def to_query(self, *, default_page_size: int = 20) -> CatalogQuery:
        data: dict[str, Any] = self.cleaned_data
        return CatalogQuery(
            q=data.get("q") or "",
            category=data.get("category") or "",
            pricing=data.get("pricing") or "",
            tag=data.get("tag") or "",
            publisher=data.get("publisher") or "",
            certified=bool(data.get("certified")),
            sort=data.get("sort") or "relevance",
            page=data.get("page") or 1,
            page_size=data.get("page_size") or default_page_size,
        )


class ReviewForm(forms.Form):
    rating = forms.TypedChoiceField(
        label=_("Rating"),
        coerce=int,
        choices=[(n, n) for n in range(5, 0, -1)],
        widget=forms.RadioSelect,
    )
    text = forms.CharField(
        label=_("Your review"),
        required=False,
        max_length=REVIEW_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
    )


class ReportForm(forms.Form):
    reason = forms.CharField(
        label=_("What is wrong with this review?"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class CatalogPolicyForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("What members see"), choices=CatalogPolicy.Mode.choices, widget=forms.RadioSelect
    )
    blueprints = forms.MultipleChoiceField(label=_("Allowed blueprints"), required=False)
    publishers = forms.MultipleChoiceField(label=_("Allowed publishers"), required=False)
    categories = forms.MultipleChoiceField(
        label=_("Allowed categories"), required=False, choices=Category.choices
    )

    def __init__(self, *args: Any, blueprint_choices: Any, publisher_choices: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name, choices in (
            ("blueprints", blueprint_choices),
            ("publishers", publisher_choices),
            ("categories", Category.choices),
        ):
            field = self.fields[name]
            assert isinstance(field, forms.MultipleChoiceField)
            field.choices = choices
            field.widget = forms.CheckboxSelectMultiple(choices=choices)
