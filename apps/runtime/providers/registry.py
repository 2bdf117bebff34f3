"""Providers by name, for the remote providers a deployment reaches with its own key.

The ``local`` provider is not built here: it answers from the deployment's knowledge rather than
a key and an endpoint, so its caller constructs ``apps.runtime.providers.local.LocalProvider(
knowledge=...)`` directly and hands it to `apps.runtime.resilience.resilient_stream` like any
other `Provider`.

A provider holds an HTTP connection pool bound to the event loop it first runs on: build one per
conversation turn (or per loop) and ``await provider.aclose()`` when done, rather than caching it
across loops.
"""

from __future__ import annotations

from apps.runtime.providers.anthropic import AnthropicProvider
from apps.runtime.providers.openai import OpenAIProvider

REMOTE_PROVIDERS = ("openai", "anthropic")
LOCAL_PROVIDER = "local"


RemoteProvider = OpenAIProvider | AnthropicProvider


class UnknownProvider(ValueError):
    pass


def provider_for(name: str, *, api_key: str, base_url: str | None = None) -> RemoteProvider:
    """The provider called ``name`` (one of `REMOTE_PROVIDERS`), with the deployment's key.

    ``base_url`` points it at another endpoint speaking the same API (for ``openai``: vLLM,
    Ollama, Azure OpenAI; for ``anthropic``: a proxy or gateway).
    """
    if name == "openai":
        return OpenAIProvider(api_key, base_url=base_url)
    if name == "anthropic":
        return AnthropicProvider(api_key, base_url=base_url)
    if name == LOCAL_PROVIDER:
        raise UnknownProvider(
            "the local provider needs the deployment's knowledge, not a key: "
            "construct apps.runtime.providers.local.LocalProvider(knowledge=...) instead"
        )
    raise UnknownProvider(f"unknown provider {name!r}; expected one of {REMOTE_PROVIDERS}")
