"""Markdown from publishers and reviewers: refused when it carries HTML or unsafe links, and
rendered to sanitised HTML when it does not.

Two layers: validation rejects raw HTML and links whose scheme is not http, https or mailto (the
author gets an error naming the problem); rendering disables raw HTML and passes the output
through an allow-list sanitiser (nh3), so even a row written around the validation is safe.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
ALLOWED_TAGS = frozenset(
    {
        "a", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
        "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}

# Parses everything (raw HTML, any link) so that validation sees what the author wrote.
_inspector = MarkdownIt("commonmark", {"html": True}).enable("table")
_inspector.validateLink = lambda url: True  # type: ignore[method-assign]
# Renders with raw HTML off and markdown-it's own link validation on.
_renderer = MarkdownIt("commonmark", {"html": False}).enable("table")


def _walk(tokens: list[Token]) -> list[Token]:
    flat: list[Token] = []
    for token in tokens:
        flat.append(token)
        if token.children:
            flat.extend(_walk(token.children))
    return flat


def _unsafe_url(url: str) -> bool:
    # Browsers ignore control characters and whitespace inside a scheme ("java\tscript:").
    cleaned = "".join(ch for ch in url if ch > " ").strip()
    scheme = urlsplit(cleaned).scheme.lower()
    return bool(scheme) and scheme not in SAFE_SCHEMES


def markdown_problems(text: str) -> list[str]:
    """What makes ``text`` unacceptable as Markdown here; empty when it is fine."""
    problems: list[str] = []
    for token in _walk(_inspector.parse(text)):
        if token.type in ("html_block", "html_inline"):
            problems.append(
                f"Raw HTML is not allowed ({token.content.strip()[:40]!r}); use Markdown instead."
            )
        elif token.type == "link_open" and _unsafe_url(str(token.attrGet("href") or "")):
            problems.append(
                f"Links must use http, https or mailto ({str(token.attrGet('href'))[:40]!r})."
            )
        elif token.type == "image":
            # Remote images would let a listing track who views it.
            problems.append("Images are not supported; describe the blueprint in text.")
    # One message per kind of problem is enough for the author to find them all.
    return list(dict.fromkeys(problems))


def render_markdown(text: str) -> str:
    html = _renderer.render(text)
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(SAFE_SCHEMES),
        link_rel="nofollow noopener noreferrer",
    )
