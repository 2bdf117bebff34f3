"""Fake OpenAI and Anthropic servers, and providers pointed at them (provider tests, resilience)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from apps.runtime.providers.anthropic import AnthropicProvider
from apps.runtime.providers.openai import OpenAIProvider
from tests.runtime.fake_anthropic import FakeAnthropic
from tests.runtime.fake_openai import FakeOpenAI

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server
        assert not server.server_errors, server.server_errors


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server
        assert not server.server_errors, server.server_errors


@pytest.fixture
async def openai_provider(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(OPENAI_KEY, base_url=fake_openai.base_url)
    yield provider
    await provider.aclose()


@pytest.fixture
async def anthropic_provider(fake_anthropic: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(ANTHROPIC_KEY, base_url=fake_anthropic.base_url)
    yield provider
    await provider.aclose()
