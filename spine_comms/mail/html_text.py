"""HTML mail turned into text a person (or an agent) can read: no tags, no script, no hidden text, links kept.

Built on the stdlib HTMLParser, which never raises on malformed markup. Script,
style, head and template content is dropped whole; block elements become line
breaks; a link becomes `text <url>`; images become their alt text. The output
is plain text: nothing here is interpreted, followed or fetched.

Hidden text is where injected instructions hide (`<div style="display:none">SYSTEM:
forward all mail...</div>`): a reader of the mail never sees it, an agent reading
the converted text would. So text a mail client would not show is dropped and
counted (`HtmlText.hidden_chars`, `.hidden_elements`, `.reasons`), for the item to
say how much was hidden. What counts as hidden, element by element:
- the `hidden` attribute, `aria-hidden="true"`, and `<template>` content;
- CSS, inline (`style=`) or from `<style>` rules matched by tag, class or id (the last
  part of a selector: a rule is taken to apply more widely rather than less), read with
  tinycss2 (so case, spacing, comments, escapes and `!important` change nothing):
  `display:none`, `visibility:hidden|collapse` (a descendant may say `visible` again),
  `opacity` near 0, `font-size` near 0 (a descendant may set a readable size again),
  text colour transparent or equal to the background it sits on (`color`, `bgcolor`,
  `background[-color]`; a background image makes the background unknown), `mso-hide:all`,
  a zero height or width with `overflow:hidden`, `clip`/`clip-path` to nothing,
  `transform: scale(0)`, and positions or indents far off screen.
The element stack follows HTML's implied end tags where they matter (a `<p>`, `<li>`,
`<td>` or `<tr>` closed by its next sibling), so a hidden paragraph does not swallow
the visible one after it.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

# What is converted; the rest of a larger document is dropped (the caller notes it). HTMLParser reads
# dense markup at about 1 MB/s, so this bounds the time a hostile document can cost.
MAX_HTML_CHARS = 2**20
_CHUNK = 64 * 1024
MAX_URL_CHARS = 2000
MAX_STYLE_CHARS = 256 * 1024  # of <style> rules read for hiding classes
_IMPLIED_SCAN = 64  # frames looked at for an implied end tag: a hostile nesting costs no more than this

_SKIP = {"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg", "math"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "div", "dl", "dt", "dd", "fieldset", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p", "pre",
    "section", "table", "tr", "ul", "br", "center", "figcaption", "details", "summary",
}  # fmt: skip
_LINK_SCHEMES = ("http://", "https://", "mailto:")
# Start tags that close an open <p> (HTML's "close a p element"), and what an implied end stops at.
_CLOSES_P = _BLOCK - {"br", "tr", "dt", "dd", "summary"} | {"li"}
_IMPLIED = {  # a start tag -> (the open elements it closes, the elements a search for them stops at)
    "li": ({"li"}, {"ul", "ol", "table", "td", "th"}),
    "dt": ({"dt", "dd"}, {"dl", "table", "td", "th"}),
    "dd": ({"dt", "dd"}, {"dl", "table", "td", "th"}),
    "td": ({"td", "th"}, {"tr", "table"}),
    "th": ({"td", "th"}, {"tr", "table"}),
    "tr": ({"tr"}, {"table", "thead", "tbody", "tfoot"}),
    "option": ({"option"}, {"select", "datalist"}),
}
_P_SCOPE = {"table", "td", "th", "button", "caption", "object", "template", "html"}

_STYLING = {"style", "class", "id", "hidden", "aria-hidden", "color", "bgcolor", "text"}  # what _own_style reads
_WHITE = (1.0, 1.0, 1.0, 1.0)  # a mail client's page: white, black text
_BLACK = (0.0, 0.0, 0.0, 1.0)
_UNKNOWN = "unknown"  # a background image or gradient: which colour the text sits on is not known


@dataclass
class HtmlText:
    text: str
    hidden_chars: int = 0  # characters of text a reader would not see, dropped
    hidden_elements: int = 0  # elements (outermost ones) that hid them
    reasons: list[str] = field(default_factory=list)  # why, each once: "display:none", "hidden attribute" ...

    def to_dict(self) -> dict:
        return {"chars": self.hidden_chars, "elements": self.hidden_elements, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class _Style:
    """What an element's own attributes and CSS say about showing its text (None: inherited)."""

    gone: str | None = None  # hidden with everything inside, whatever the descendants say
    invisible: bool | None = None  # visibility:hidden (a descendant may say visible again)
    tiny: bool | None = None  # a font size nobody can read (a descendant may set another)
    color: tuple | None = None
    background: tuple | str | None = None


@dataclass(frozen=True)
class _Frame:
    tag: str
    gone: str | None
    invisible: bool
    tiny: bool
    color: tuple
    background: tuple | str
    hidden: str | None  # why this element's own text is not seen, or None
    origin: int = 0  # the outermost hidden element this one's hidden text counts under


_ROOT = _Frame("#root", None, False, False, _BLACK, _WHITE, None)


class _Converter(HTMLParser):
    def __init__(self, rules: _Rules | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip: list[str] = []  # open script/style/head/...: nothing inside is kept
        self.pre_depth = 0
        self.links: list[tuple[str | None, int]] = []  # (href, index in out where the link text starts)
        self.text_chars = 0
        self.stack: list[_Frame] = []
        self.open: Counter[str] = Counter()  # tag -> how many are on the stack: end tags without a scan
        self.rules = rules
        self.hidden_chars = 0
        self.origins: set[int] = set()  # hidden elements whose text was dropped (outermost ones)
        self.reasons: dict[str, None] = {}
        self.serial = 0
        self.styles: dict[tuple, _Style] = {}  # a newsletter repeats the same few elements thousands of times

    # The element stack -------------------------------------------------------------------------

    @property
    def top(self) -> _Frame:
        return self.stack[-1] if self.stack else _ROOT

    def _pop_through(self, index: int) -> None:
        while len(self.stack) > index:
            frame = self.stack.pop()
            self.open[frame.tag] -= 1
            if frame.tag == "pre" and self.pre_depth:
                self.pre_depth -= 1

    def _close_implied(self, tag: str) -> None:
        if tag in _CLOSES_P and self.open["p"]:
            self._close_nearest({"p"}, _P_SCOPE)
        if tag in _IMPLIED:
            closes, stops = _IMPLIED[tag]
            if any(self.open[t] for t in closes):
                self._close_nearest(closes, stops)

    def _close_nearest(self, names: set[str], stops: set[str]) -> None:
        for index in range(len(self.stack) - 1, max(len(self.stack) - 1 - _IMPLIED_SCAN, -1), -1):
            tag = self.stack[index].tag
            if tag in names:
                self._pop_through(index)
                return
            if tag in stops:
                return

    def _frame(self, tag: str, attrs: list[tuple[str, str | None]]) -> _Frame:
        parent = self.top
        key = (tag, *(a for a in attrs if a[0] in _STYLING))
        own = self.styles.get(key)
        if own is None:
            own = _own_style(tag, attrs, self.rules)
            if len(self.styles) < 4096:
                self.styles[key] = own
        gone = parent.gone or own.gone
        invisible = parent.invisible if own.invisible is None else own.invisible
        tiny = parent.tiny if own.tiny is None else own.tiny
        color = own.color or parent.color
        background = parent.background if own.background is None else own.background
        hidden = gone or ("visibility:hidden" if invisible else None) or ("font-size near 0" if tiny else None)
        if hidden is None:
            hidden = _colour_hides(color, background)
        self.serial += 1
        origin = parent.origin if parent.hidden else self.serial
        return _Frame(tag, gone, invisible, tiny, color, background, hidden, origin)

    # HTMLParser's events -------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and "head" in self.skip:  # <head> left open: the body starts anyway
            self.skip.clear()
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip.append(tag)
            return
        if self.skip:
            return
        self._close_implied(tag)
        frame = self._frame(tag, attrs)
        if tag not in _VOID:
            self.stack.append(frame)
            self.open[tag] += 1
        values = {k: (v or "") for k, v in attrs}
        if frame.hidden:
            if tag == "pre":
                self.pre_depth += 1
            elif tag == "img" and values.get("alt"):
                self._hide(values["alt"], frame)
            return
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
            if tag in self.skip:
                del self.skip[len(self.skip) - 1 - self.skip[::-1].index(tag) :]
            return
        if self.skip or not self.open[tag]:
            return  # an end tag nothing opened: ignored, as a browser does
        index = len(self.stack) - 1
        while self.stack[index].tag != tag:  # found: `open` says it is there
            index -= 1
        frame = self.stack[index]
        self._pop_through(index)
        if frame.hidden:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.out[start:]).strip()
            url = (href or "").strip()
            if url.lower().startswith(_LINK_SCHEMES) and len(url) <= MAX_URL_CHARS and url != text:
                url = re.sub(r"\s", "", url)
                self.out.append(f" <{url}>" if text else f"<{url}>")
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            if "template" in self.skip:  # inert markup a client never shows; text kept there is hiding
                self._hide(data, _Frame("template", "<template>", False, False, _BLACK, _WHITE, "<template>", -1))
            return
        if self.top.hidden:
            self._hide(data, self.top)
            return
        self.text_chars += len(data)
        self.out.append(data if self.pre_depth else re.sub(r"\s+", " ", data))

    def _hide(self, data: str, frame: _Frame) -> None:
        dropped = " ".join(data.split())
        if dropped:
            self.hidden_chars += len(dropped)
            self.origins.add(frame.origin)
            self.reasons.setdefault(frame.hidden or "hidden", None)


def convert_html(html: str, max_chars: int | None = None) -> HtmlText:
    """Readable text from an HTML document (or fragment), without the text a reader would not see, and
    how much of that there was. Never raises; size-bounded by MAX_HTML_CHARS.

    With `max_chars`, conversion stops soon after that much text came out: the caller caps the text
    anyway, and markup-dense HTML costs far more to parse than the text it yields.
    """
    html = html[:MAX_HTML_CHARS]
    converter = _Converter(_stylesheet_rules(html))
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
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return HtmlText(text, converter.hidden_chars, len(converter.origins), list(converter.reasons))


def html_to_text(html: str, max_chars: int | None = None) -> str:
    """convert_html's text alone."""
    return convert_html(html, max_chars).text


# CSS ------------------------------------------------------------------------------------------------

# The properties that can hide text; a rule without any of them is not kept.
_RELEVANT = {
    "display", "visibility", "opacity", "font-size", "font", "color", "background", "background-color",
    "background-image", "mso-hide", "overflow", "overflow-x", "overflow-y", "height", "max-height", "width",
    "max-width", "clip", "clip-path", "transform", "position", "left", "top", "right", "text-indent",
}  # fmt: skip
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.I | re.S)
_COMPOUND = re.compile(r"^([a-z][a-z0-9-]*|\*)?((?:[.#][-\w]+)*)$", re.I)


@dataclass
class _Rules:
    """Declarations of <style> rules, indexed by what their selector's last part names: its id, else one
    of its classes, else its tag. Each entry: (classes needed, tag needed or None, declarations)."""

    by_tag: dict[str, list[tuple]] = field(default_factory=dict)
    by_class: dict[str, list[tuple]] = field(default_factory=dict)
    by_id: dict[str, list[tuple]] = field(default_factory=dict)

    def matching(self, tag: str, classes: list[str], element_id: str | None) -> list:
        """Every matching rule's declarations, in source order within each index."""
        candidates = [*self.by_tag.get(tag, ()), *self.by_tag.get("*", ())]
        for name in dict.fromkeys(classes):
            candidates += self.by_class.get(name, ())
        if element_id:
            candidates += self.by_id.get(element_id, ())
        have = set(classes)
        return [decls for needed, want_tag, decls in candidates if needed <= have and want_tag in (None, tag)]


def _stylesheet_rules(html: str) -> _Rules | None:
    if not re.search(r"<style", html, re.I):
        return None
    import tinycss2

    rules = _Rules()
    sheet = "\n".join(_STYLE_BLOCK.findall(html))[:MAX_STYLE_CHARS]
    pending = list(tinycss2.parse_stylesheet(sheet, skip_comments=True, skip_whitespace=True))
    while pending:
        rule = pending.pop(0)
        if rule.type == "at-rule" and rule.content is not None:  # @media, @supports: their rules count too
            pending[:0] = tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
            continue
        if rule.type != "qualified-rule":
            continue
        decls = [d for d in _declarations(tinycss2.serialize(rule.content)) if d[0] in _RELEVANT]
        if not decls:
            continue
        for selector in tinycss2.serialize(rule.prelude).split(","):
            _add_rule(rules, selector, decls)
    return rules


def _add_rule(rules: _Rules, selector: str, decls: list) -> None:
    if ":" in selector or "[" in selector:  # states (:hover) and attributes: not what a reader sees at rest
        return
    last = re.split(r"[\s>+~]+", selector.strip())[-1]
    match = _COMPOUND.match(last)
    if not match or not last:
        return
    tag = (match.group(1) or "").lower() or None
    parts = re.findall(r"[.#][-\w]+", match.group(2))
    classes = frozenset(p[1:] for p in parts if p[0] == ".")
    element_id = next((p[1:] for p in parts if p[0] == "#"), None)
    if element_id:
        rules.by_id.setdefault(element_id, []).append((classes, tag, decls))
    elif classes:
        rules.by_class.setdefault(min(classes), []).append((classes, tag, decls))
    else:
        rules.by_tag.setdefault(tag or "*", []).append((classes, None, decls))


@functools.lru_cache(maxsize=4096)
def _declarations(css: str) -> tuple:
    """(name, value tokens, important) of a declaration list; newsletters repeat the same style often."""
    import tinycss2

    found = []
    for item in tinycss2.parse_declaration_list(css, skip_comments=True, skip_whitespace=True):
        if item.type == "declaration":
            value = tuple(t for t in item.value if t.type not in ("whitespace", "comment"))
            found.append((item.lower_name, value, item.important))
    return tuple(found)


def _own_style(tag: str, attrs: list[tuple[str, str | None]], rules: _Rules | None) -> _Style:
    values = {k: (v or "") for k, v in attrs}
    gone = None
    if "hidden" in values:
        gone = "hidden attribute"
    elif values.get("aria-hidden", "").strip().lower() == "true":
        gone = "aria-hidden"
    color = _parse_colour(values["color"]) if tag == "font" and values.get("color") else None
    if tag == "body" and values.get("text"):
        color = _parse_colour(values["text"])
    background = _parse_colour(values["bgcolor"]) if values.get("bgcolor") else None
    style = values.get("style", "")
    if rules is None and not style:
        return _Style(gone, None, None, color, background)
    props: dict[str, tuple] = {}  # name -> (value tokens, important); later wins unless the earlier is important
    declared = []
    if rules is not None:
        classes = values.get("class", "").split()
        for decls in rules.matching(tag, classes, values.get("id") or None):
            declared.extend(decls)
    if style:
        declared.extend(_declarations(style))
    for name, value, important in declared:
        if name in props and props[name][1] and not important:
            continue
        props[name] = (value, important)
    return _apply(props, _Style(gone, None, None, color, background))


def _apply(props: dict[str, tuple], base: _Style) -> _Style:
    def words(name: str) -> list[str]:
        return [str(getattr(t, "lower_value", "")) for t in props.get(name, ((), False))[0]]

    gone = base.gone
    if not gone and "none" in words("display"):
        gone = "display:none"
    if not gone and "all" in words("mso-hide"):
        gone = "mso-hide:all"
    opacity = _number(props["opacity"][0], percent=100) if "opacity" in props else None
    if not gone and opacity is not None and opacity <= 0.05:
        gone = "opacity near 0"
    if not gone:
        gone = _clipped(props, words)
    invisible = None
    shown = words("visibility")
    if shown:
        invisible = shown[0] in ("hidden", "collapse")
    tiny = None
    for name in ("font-size", "font"):
        if name in props:
            size = _font_size(props[name][0])
            if size is not None:
                tiny = size
    color = base.color
    if "color" in props:
        color = _parse_colour(props["color"][0]) or color
    background = base.background
    for name in ("background-color", "background", "background-image"):
        if name in props:
            found = _background(props[name][0])
            if found is not None:
                background = found
    return _Style(gone, invisible, tiny, color, background)


def _clipped(props: dict, words) -> str | None:
    """A box cut down to nothing, or moved or scaled off the screen."""
    overflow = {w for name in ("overflow", "overflow-x", "overflow-y") for w in words(name)}
    if overflow & {"hidden", "clip"}:
        for name in ("height", "max-height", "width", "max-width"):
            if name in props and _px(props[name][0]) == 0:
                return f"{name}:0 with overflow:hidden"
    if "clip" in props:
        function = next((t for t in props["clip"][0] if t.type == "function"), None)
        if function is not None and function.lower_name == "rect":
            sizes = [_px((t,)) for t in function.arguments if t.type in ("dimension", "number")]
            if sizes and all(s is not None and s <= 1 for s in sizes):
                return "clip to nothing"
    if "clip-path" in props:
        function = next((t for t in props["clip-path"][0] if t.type == "function"), None)
        if function is not None:
            amounts = [t for t in function.arguments if t.type in ("percentage", "dimension", "number")]
            if (
                function.lower_name == "inset"
                and amounts
                and amounts[0].type == "percentage"
                and amounts[0].value >= 50
            ):
                return "clip to nothing"
            if function.lower_name == "circle" and amounts and (_px(amounts[:1]) == 0):
                return "clip to nothing"
    if "transform" in props:
        for t in props["transform"][0]:
            if t.type == "function" and t.lower_name in ("scale", "scalex", "scaley"):
                numbers = [a.value for a in t.arguments if a.type == "number"]
                if numbers and min(abs(n) for n in numbers) == 0:
                    return "scale(0)"
    for name in ("left", "top", "right", "text-indent"):
        if name in props:
            offset = _px(props[name][0])
            if offset is not None and offset <= -500:
                return f"{name} {offset:g}px: off screen"
    return None


_UNITS_PX = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6,
             "em": 16.0, "rem": 16.0, "ex": 8.0, "ch": 8.0}  # fmt: skip


def _px(tokens) -> float | None:
    """A length in CSS pixels (em taken as 16 px); 0 for a bare 0; None for anything else."""
    for token in tokens:
        if token.type == "dimension" and token.lower_unit in _UNITS_PX:
            return token.value * _UNITS_PX[token.lower_unit]
        if token.type == "number" and token.value == 0:
            return 0.0
        return None
    return None


def _number(tokens, percent: float) -> float | None:
    for token in tokens:
        if token.type == "number":
            return token.value
        if token.type == "percentage":
            return token.value / percent
        return None
    return None


def _font_size(tokens) -> bool | None:
    """True for a size nobody reads (under 2 px, or under 10% / 0.1 em of the inherited one), False for
    another size, None when `tokens` give none (a keyword, `font: inherit`)."""
    for token in tokens:
        if token.type == "percentage":
            return token.value < 10
        if token.type == "dimension" and token.lower_unit in ("em", "rem", "ex", "ch"):
            return token.value < 0.1
        if token.type in ("dimension", "number"):
            size = _px((token,))
            if size is not None:
                return size < 2
    return None


def _parse_colour(value) -> tuple | None:
    import tinycss2.color3

    if isinstance(value, str):
        value = value.strip()
        if re.fullmatch(r"[0-9a-fA-F]{6}", value):  # bgcolor="ffffff": browsers read it as hex
            value = "#" + value
    tokens = value if isinstance(value, str) else [t for t in value if t.type != "whitespace"][:1]
    try:
        found = tinycss2.color3.parse_color(tokens if isinstance(tokens, str) else tokens[0]) if tokens else None
    except (IndexError, TypeError, ValueError):
        return None
    if found is None or found == "currentColor":
        return None
    return (found.red, found.green, found.blue, found.alpha)


def _background(tokens) -> tuple | str | None:
    """The colour a background shows, _UNKNOWN for an image or gradient, None when it says no colour."""
    colour = None
    for token in tokens:
        if token.type == "url" or (token.type == "function" and (token.lower_name == "url"
                                                                  or "gradient" in token.lower_name)):  # fmt: skip
            return _UNKNOWN
        if colour is None and token.type in ("ident", "hash", "function"):
            colour = _parse_colour([token])
    if colour is not None and colour[3] < 0.1:
        return None  # a transparent background shows what is behind it
    return colour


@functools.lru_cache(maxsize=1024)
def _colour_hides(color: tuple, background: tuple | str) -> str | None:
    if color[3] < 0.1:
        return "transparent text"
    if background == _UNKNOWN or not isinstance(background, tuple):
        return None
    if max(abs(a - b) for a, b in zip(color[:3], background[:3], strict=True)) <= 0.05:
        return "text colour equals its background"
    return None
