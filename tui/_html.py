"""Conversion of the daemon's HTML model cards to Markdown for the terminal.

Only what a model card uses is kept: headings, paragraphs, list items and
tables. Images (the plots) are replaced by their alt text, because a terminal
cannot show them; styles and scripts are dropped.
"""

from __future__ import annotations

from html.parser import HTMLParser

_HEADINGS = {"h1": "#", "h2": "##", "h3": "###", "h4": "####"}
_BLOCKS = {"p", "div", "section", "ul", "ol", "dl", "pre", "table", "br"}
_SKIPPED = {"style", "script", "title", "head"}


class _CardParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.text: list[str] = []
        self.skip = 0
        self.row: list[str] | None = None
        self.table_rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skip += 1
        elif tag in _HEADINGS:
            self._flush()
            self.text.append(_HEADINGS[tag] + " ")
        elif tag == "li":
            self._flush()
            self.text.append("- ")
        elif tag == "tr":
            self._flush()
            self.row = []
        elif tag in ("td", "th"):
            self.text = []
        elif tag == "img":
            alt = dict(attrs).get("alt") or "image"
            self.text.append(f"[plot: {alt}]")
        elif tag in _BLOCKS:
            self._flush()
        if tag == "table":
            self.table_rows = 0

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skip = max(0, self.skip - 1)
        elif tag in ("td", "th") and self.row is not None:
            self.row.append(" ".join("".join(self.text).split()).replace("|", "\\|"))
            self.text = []
        elif tag == "tr" and self.row is not None:
            self.lines.append("| " + " | ".join(self.row) + " |")
            if self.table_rows == 0:
                self.lines.append("|" + " --- |" * len(self.row))
            self.table_rows += 1
            self.row = None
        elif tag in _HEADINGS or tag in _BLOCKS or tag == "li":
            self._flush()
            if tag != "li":
                self.lines.append("")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.text.append(data)

    def _flush(self) -> None:
        line = " ".join("".join(self.text).split())
        if line:
            self.lines.append(line)
        self.text = []


def html_to_markdown(html: str) -> str:
    """Return the headings, paragraphs, lists and tables of `html` as Markdown.

    >>> html_to_markdown("<h1>Card</h1><p>A <b>model</b></p>"
    ...                  "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>")
    '# Card\\n\\nA model\\n\\n| a |\\n| --- |\\n| 1 |'
    """
    parser = _CardParser()
    parser.feed(html)
    parser.close()
    parser._flush()
    text = "\n".join(parser.lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()
