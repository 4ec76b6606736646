"""docs/benchmarks.md: one ``## `` section per benchmark script.

Each script replaces its own section and leaves the others as they are, so
the page keeps the latest run of every benchmark.
"""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "One section per script in `benchmarks/`; rerunning a script replaces its "
    "section. Peers run side by side in the same run, from their own venvs "
    "under `benchmarks/.venvs/` (not project dependencies).\n"
)


def write_section(heading: str, body: str, page: Path = PAGE) -> None:
    """Replace the section whose ``## `` line starts with `heading`, or add it.

    Args:
        heading: Start of the section's heading line, without the ``## ``.
        body: The whole section, its ``## `` line included.
        page: The Markdown file to update.
    """
    text = page.read_text() if page.exists() else HEADER
    head, sections = _split(text)
    replaced = False
    for index, section in enumerate(sections):
        if section.startswith("## " + heading):
            sections[index] = body.strip() + "\n"
            replaced = True
    if not replaced:
        sections.append(body.strip() + "\n")
    page.write_text("\n".join([head.rstrip() + "\n", *sections]))


def _split(text: str) -> tuple[str, list[str]]:
    """Return the text before the first ``## `` line and each section after it."""
    parts = text.split("\n## ")
    head = parts[0]
    return head, ["## " + part.rstrip() + "\n" for part in parts[1:]]
