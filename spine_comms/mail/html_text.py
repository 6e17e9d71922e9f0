"""HTML mail turned into text a person (or an agent) can read: no tags, no script, links kept.

Built on the stdlib HTMLParser, which never raises on malformed markup. Script,
style, head and template content is dropped whole (it is not meant to be read,
and hidden text is where injected instructions hide); block elements become line
breaks; a link becomes `text <url>`; images become their alt text. The output
is plain text: nothing here is interpreted, followed or fetched.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# What is converted; the rest of a larger document is dropped (the caller notes it). HTMLParser reads
# dense markup at about 1 MB/s, so this bounds the time a hostile document can cost.
MAX_HTML_CHARS = 2**20
_CHUNK = 64 * 1024
MAX_URL_CHARS = 2000

_SKIP = {"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg", "math"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p", "pre",
    "section", "table", "tr", "ul", "br", "center", "figcaption", "details", "summary",
}  # fmt: skip
_LINK_SCHEMES = ("http://", "https://", "mailto:")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0  # inside script/style/...: nothing is kept
        self.pre_depth = 0
        self.links: list[tuple[str | None, int]] = []  # (href, index in out where the link text starts)
        self.text_chars = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip_depth += 1
            return
        if self.skip_depth:
            return
        values = {k: (v or "") for k, v in attrs}
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "li":  # one item a line; no blank line between items
            self.out.append("\n- ")
        elif tag == "pre":
            self.pre_depth += 1
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img" and values.get("alt"):
            self.out.append(f"[{values['alt']}]")
        elif tag == "a":
            self.links.append((values.get("href"), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<script/>` or `<div/>`: a start and an end at once, so nothing stays open.
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag not in _VOID and self.skip_depth:
                self.skip_depth -= 1
            return
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.out[start:]).strip()
            url = (href or "").strip()
            if url.lower().startswith(_LINK_SCHEMES) and len(url) <= MAX_URL_CHARS and url != text:
                url = re.sub(r"\s", "", url)
                self.out.append(f" <{url}>" if text else f"<{url}>")
        elif tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        self.text_chars += len(data)
        self.out.append(data if self.pre_depth else re.sub(r"\s+", " ", data))


def html_to_text(html: str, max_chars: int | None = None) -> str:
    """Readable text from an HTML document (or fragment). Never raises; size-bounded by MAX_HTML_CHARS.

    With `max_chars`, conversion stops soon after that much text came out: the caller caps the text
    anyway, and markup-dense HTML costs far more to parse than the text it yields.
    """
    converter = _Converter()
    html = html[:MAX_HTML_CHARS]
    try:
        for start in range(0, len(html), _CHUNK):
            converter.feed(html[start : start + _CHUNK])
            if max_chars is not None and converter.text_chars > max_chars:
                break
        converter.close()
    except Exception:  # HTMLParser is lenient, but the text is hostile: keep what was converted so far
        pass
    text = "".join(converter.out)
    lines = [line.strip() for line in text.replace("\xa0", " ").split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
