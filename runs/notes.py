"""A run's notes (``sys/description``) as Markdown: parsed with raw HTML off, then sanitised.

markdown-it escapes any HTML the text holds and refuses ``javascript:``/``vbscript:``/``data:`` links;
nh3 (Ammonia) then keeps only the tags Markdown makes, only http(s)/mailto links, and gives every
link ``rel="noopener nofollow noreferrer"``: two independent layers between a note and the page.
"""

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

MAX_NOTES_CHARS = 65_536

_md = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    .enable("table")
    .enable("strikethrough")
)

_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}, "th": set(), "td": set()}


def render_markdown(text: str) -> Markup:
    """Safe HTML of a Markdown note: no raw HTML, no script, no style, no event handler, no
    ``javascript:`` URL; links open with ``rel="noopener nofollow noreferrer"``."""
    html = _md.render(text or "")
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener nofollow noreferrer",
        strip_comments=True,
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above
