"""Modal screens: confirmation, help, a Markdown document and a side-by-side table."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Markdown, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a change whose message describes it; y confirms, n cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 70; max-width: 95%; height: auto; max-height: 90%;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    ConfirmScreen #question { text-style: bold; }
    ConfirmScreen #buttons { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str, detail: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="question", markup=False)
            yield Static(self.detail, id="detail", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class DocumentScreen(ModalScreen[None]):
    """Show a Markdown document, such as a model card; escape closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    DocumentScreen { align: center middle; }
    DocumentScreen > VerticalScroll {
        width: 95%; height: 90%; border: thick $primary; background: $surface;
    }
    """

    def __init__(self, title: str, markdown: str) -> None:
        super().__init__()
        self.title_text = title
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = self.title_text
            scroll.border_subtitle = "escape: close"
            yield Markdown(self.markdown)


class TableScreen(ModalScreen[None]):
    """Show rows in a table, such as two runs side by side; escape closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    TableScreen { align: center middle; }
    TableScreen > Vertical {
        width: 95%; height: 90%; border: thick $primary; background: $surface;
    }
    TableScreen DataTable { height: 1fr; }
    """

    def __init__(
        self, title: str, columns: list[str], rows: list[list[Any]], note: str = ""
    ) -> None:
        super().__init__()
        self.title_text = title
        self.columns = columns
        self.rows = rows
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            box.border_subtitle = "escape: close"
            if self.note:
                yield Static(self.note, markup=False)
            table: DataTable[Any] = DataTable(zebra_stripes=True)
            table.add_columns(*self.columns)
            for row in self.rows:
                table.add_row(*row)
            yield table


class HelpScreen(ModalScreen[None]):
    """List every screen with its key and every key of each screen."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 78; max-width: 100%; height: 90%;
        border: thick $primary; background: $surface;
    }
    """

    def __init__(self, markdown: str) -> None:
        super().__init__()
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "Help"
            scroll.border_subtitle = "escape: close"
            yield Markdown(self.markdown)
