"""The agent's Markdown: rendered, with nothing of the agent's becoming an element."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from gooseui.devcluster.goose import RICH_REPLY
from gooseui.ui.markdown import TAGS as MARKDOWN_TAGS
from gooseui.ui.markdown import render

EXTRAS = "fenced-code-blocks tables"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(markup)
    return parser.tags


def test_a_rich_reply_keeps_its_structure_and_loses_its_html() -> None:
    out = render(RICH_REPLY.format(project="p1"), EXTRAS)
    found = tags(out)
    names = {name for name, _ in found}
    assert {"h2", "ol", "table", "pre", "code"} <= names
    assert names <= MARKDOWN_TAGS
    # the raw <img onerror> is text on the page; the Markdown image is a link, not a fetch
    assert "&lt;img src=" in out and "onerror" not in "".join(str(a) for _, a in found)
    links = [attrs for name, attrs in found if name == "a"]
    assert links == [
        {
            "href": "https://example.invalid/chart.png",
            "target": "_blank",
            "rel": "noopener noreferrer nofollow",
        }
    ]


def test_scripts_frames_handlers_and_script_urls_never_become_markup() -> None:
    hostile = (
        '<script>alert(1)</script>\n\n<iframe src="https://x.invalid"></iframe>\n\n'
        '[click](javascript:alert(1)) <a href="https://x.invalid" onclick="x()">a</a>\n\n'
        '![p](javascript:alert(1)) <svg onload="x()"></svg> <b>bold</b>'
    )
    found = tags(render(hostile, EXTRAS))
    assert {name for name, _ in found} <= {"p", "a"}
    for _, attrs in found:
        assert not any(key.startswith("on") for key in attrs)
        assert not (attrs.get("href") or "").lower().startswith("javascript")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["<", ">", "img", "script", " src=x", " onerror=y", "![a](", "http://h/p.png",
             ")", "[l](", "javascript:", "`", "```\n", "\n", "|a|b|\n|-|-|\n", "<b>", '"', "&"]
        ),
        max_size=30,
    ).map("".join)
)  # fmt: skip
def test_no_agent_text_becomes_an_element_beyond_markdown(text: str) -> None:
    for name, attrs in tags(render(text, EXTRAS)):
        assert name in MARKDOWN_TAGS, (name, text)
        assert not any(key.startswith("on") for key in attrs), (attrs, text)
        assert name != "img"
