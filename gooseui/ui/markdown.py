"""The agent's replies as Markdown, with nothing of the agent's becoming an element.

A reply is model output, and a prompt injection can make a model write anything. Raw HTML
in it (`<img src=… onerror=…>`, `<iframe>`) is shown as text, not parsed (markdown2's
escape mode; `javascript:` links become `#`). A Markdown image would be fetched by the
operator's browser the moment it renders, carrying in its URL whatever the model put there:
it is shown as a link instead, followed only if the operator clicks.

markdown2's escape mode lets a malformed tag through (`<img` with no `>` comes out as
`<p><img</p>`, which a browser parses as an image), so the HTML it writes passes an
allow-list last (nh3, the Rust `ammonia` sanitiser, an HTML5 parser): the tags Markdown
makes, `href` on links (http, https, mailto), `class` for code highlighting, nothing else.
DOMPurify still runs in the browser (NiceGUI's default) as a third guard.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import markdown2
import nh3
from nicegui import ui

# markdown2 writes its images as <img src="…" alt="…" /> (attributes already escaped)
_IMAGE = re.compile(r'<img src="([^"]*)" alt="([^"]*)"(?: title="[^"]*")? ?/?>')
# what markdown2 writes for Markdown syntax (with fenced code and tables)
TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "em", "strong", "code",
    "pre", "div", "span", "table", "thead", "tbody", "tr", "th", "td", "a", "blockquote",
    "hr", "br", "del",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "target"}, "div": {"class"}, "span": {"class"}, "code": {"class"}}


def _as_link(match: re.Match[str]) -> str:
    source, alt = match[1], match[2]
    if not source.startswith(("https://", "http://")):
        return html.escape(f"[image: {html.unescape(alt) or 'untitled'}]")
    label = alt or "image"
    return f'<a href="{source}" target="_blank">[image: {label}]</a>'


@lru_cache(maxsize=1000)
def render(content: str, extras: str) -> str:
    """The HTML of an agent's Markdown: its own HTML escaped, its images as links."""
    out = markdown2.markdown(content, extras=extras.split(), safe_mode="escape")
    return nh3.clean(
        _IMAGE.sub(_as_link, str(out)),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        clean_content_tags={"script", "style"},
    )


class AgentMarkdown(ui.markdown):
    """`ui.markdown` for text the agent wrote (see the module's docstring)."""

    def _handle_content_change(self, content: str) -> None:
        rendered = render(content, " ".join(self.extras))
        if self._props.get("innerHTML") != rendered:
            self._props["innerHTML"] = rendered
