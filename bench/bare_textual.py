"""The floor for start-up time: a bare Textual app with one focused TextArea and a footer."""

from textual.app import App
from textual.widgets import Footer, TextArea


class Bare(App):
    def compose(self):
        yield TextArea(placeholder="Ask anything")
        yield Footer()


Bare().run()
