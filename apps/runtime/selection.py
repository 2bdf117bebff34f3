"""Which provider serves a deployment: its version's provider when the deployment holds a key for
it, otherwise the built-in offline ``local`` provider (design.md: provider keys absent → local)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOCAL_MODEL = "local-retrieval"
KEY_SETTING = {"openai": "openai_api_key", "anthropic": "anthropic_api_key"}
BASE_URL_SETTING = {"openai": "openai_base_url", "anthropic": "anthropic_base_url"}


@dataclass(frozen=True)
class ProviderChoice:
    name: str
    model: str
    api_key: str = ""
    base_url: str | None = None

    @property
    def offline(self) -> bool:
        return self.name == "local"

    def __repr__(self) -> str:  # never print the key
        return f"ProviderChoice({self.name!r}, {self.model!r}, base_url={self.base_url!r})"


def choose_provider(
    *, provider: str, model: str, secrets: dict[str, str], settings: dict[str, Any]
) -> ProviderChoice:
    key = secrets.get(KEY_SETTING.get(provider, ""), "")
    if provider in KEY_SETTING and key:
        base_url = settings.get(BASE_URL_SETTING[provider]) or None
        return ProviderChoice(provider, model, key, base_url)
    return ProviderChoice("local", LOCAL_MODEL)


def choose_fallback(
    *, fallback: str, secrets: dict[str, str], settings: dict[str, Any], model: str
) -> ProviderChoice | None:
    """The deployment's optional fallback; a cloud fallback needs its own key."""
    if not fallback:
        return None
    if fallback == "local":
        return ProviderChoice("local", LOCAL_MODEL)
    choice = choose_provider(provider=fallback, model=model, secrets=secrets, settings=settings)
    return choice if choice.name == fallback else None
