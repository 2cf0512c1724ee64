"""Small dialogs: a line of text (rename, feedback comment), a yes/no confirmation, and the
backend and model pickers."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option


class TextDialog(ModalScreen[str | None]):
    """Returns the text entered (Enter), or None (Esc). `hint` says what the two keys do here."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "",
                 hint: str = "Enter: save · Esc: skip") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder, self.hint = title, value, placeholder, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, markup=False)
            yield Input(self.value, placeholder=self.placeholder)
            yield Label(self.hint, classes="dialog-help", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


AUTOMATIC = ""  # the picker's id for "no choice: follow the configured route"


class BackendDialog(ModalScreen[str | None]):
    """Pick the backend of this conversation; returns its name, AUTOMATIC, or None (Esc)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, backends: list[dict], current: str | None, route: list[str]) -> None:
        super().__init__()
        self.backends, self.current, self.route = backends, current, route

    def compose(self) -> ComposeResult:
        options = [Option(f"{'● ' if self.current is None else '  '}Automatic: {' → '.join(self.route)}",
                          id=AUTOMATIC)]
        for row in self.backends:
            mark = "● " if row["name"] == self.current else "  "
            where = "this machine" if row["kind"] == "local" else f"{row['kind']} · {row['endpoint']}"
            breaker = "" if row["breaker"] == "closed" else f" · breaker {row['breaker']}"
            options.append(Option(f"{mark}{row['name']} · {row['model']} · {where}{breaker}", id=row["name"]))
        with Vertical(classes="dialog wide-dialog"):
            yield Label("Backend for this conversation", markup=False)
            yield OptionList(*options)
            yield Label("Enter: use · Esc: keep", classes="dialog-help")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class ModelDialog(ModalScreen[str | None]):
    """Pick the local model; returns its file path, or None (Esc)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, models: list[dict], current: str | None) -> None:
        super().__init__()
        self.models, self.current = models, current

    def compose(self) -> ComposeResult:
        options = []
        for row in self.models:
            mark = "● " if row["path"] == self.current else "  "
            if "error" in row:
                options.append(Option(f"{mark}{row['name']} · {row['error']}", id=row["path"], disabled=True))
                continue
            size = f"{row['size'] / 1e9:.1f} GB" if row["size"] >= 1e9 else f"{row['size'] / 1e6:.0f} MB"
            options.append(Option(f"{mark}{row['name']} · {row['quantization']} · {size} · "
                                  f"context {row['context_length']} · {row['source']}", id=row["path"]))
        with Vertical(classes="dialog wide-dialog"):
            yield Label("Local model (the one loaded now is unloaded first)", markup=False)
            yield OptionList(*options)
            yield Label("Enter: load · Esc: keep · add more with `assistant models pull|add`",
                        classes="dialog-help")

    def on_mount(self) -> None:
        # Start on the loaded model, marked ●: Enter keeps it, and ↑/↓ move to the others.
        paths = [row["path"] for row in self.models]
        if self.current in paths:
            self.query_one(OptionList).highlighted = paths.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
