"""The chat screen: past conversations on the left, the conversation, the prompt, a status bar."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Markdown, Static
from textual.worker import WorkerCancelled, WorkerFailed

from app.editor import editor_command, is_paged
from app.screens.modals import AUTOMATIC, BackendDialog, ConfirmDialog, ModelDialog, TextDialog
from app.slash import matches, parse, unescape
from app.widgets.chat_log import (
    AnswerClicked,
    AnswerMessage,
    ChatLog,
    ProposalAnswered,
    ProposalCard,
    SourceClicked,
    UserMessage,
    Welcome,
    origin_text,
)
from app.widgets.conversation_list import ConversationList
from app.widgets.prompt import PromptInput
from app.widgets.status_bar import StatusBar
from engine import AssistantError, Engine, Failed, Finished, Started, Token
from plugins.hookspecs import Command, CommandContext


class ChatScreen(Screen):
    AUTO_FOCUS = "#prompt"
    # Below 100 columns the sidebar starts hidden (Ctrl+S shows it): the conversation gets the width.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("f1", "app.toggle_keys", "Keys"),  # first: still on screen when the footer is cut
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+g", "rate(1)", "👍"),
        Binding("ctrl+b", "rate(-1)", "👎"),
        # The footer lists what fits at 160 columns; the rest are in F1 (keys) and Ctrl+P.
        Binding("alt+up", "select_answer(-1)", "Select answer", show=False),
        Binding("alt+down", "select_answer(1)", "Later answer", show=False),
        Binding("ctrl+o", "copy_answer", "Copy answer"),
        Binding("ctrl+r", "open_source", "Open source", show=False),
        Binding("ctrl+f", "folders", "Folders"),
        Binding("ctrl+l", "pick_backend", "Backend", show=False),
        Binding("f9", "pick_model", "Model"),
        Binding("ctrl+t", "show_trace", "Trace"),
        Binding("f3", "stats", "Stats"),
        Binding("f4", "review", "Review"),
        Binding("f5", "regenerate", "Regenerate", show=False),
        Binding("f8", "search", "Search"),
        Binding("f12", "evals", "Evals", show=False),
        Binding("f10", "memory", "Memory"),
        Binding("ctrl+s", "toggle_sidebar", "Sidebar", show=False),
        Binding("f2", "rename_conversation", "Rename", show=False),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.conversation_id: int | None = None
        self.selected: AnswerMessage | None = None
        self.backend_choice: str | None = None  # None: the configured route
        self.alerts_shown: set[str] = set()
        self.searching = False  # the sidebar shows search results, not the latest conversations
        self.incognito = False  # this conversation writes no long-term memory
        self.commands: dict[str, Command] = {}  # slash commands, built in and the plugins'

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList(id="sidebar")
            with Vertical(id="main"):
                yield ChatLog(Welcome(), id="log")
                yield Static("", id="slash-hint", markup=False)
                yield PromptInput(id="prompt")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "indexing_text", lambda text: setattr(self.status, "indexing", text))
        self.show_backend()
        self.query_one("#slash-hint").display = False
        self.start_up()
        self.load_commands()

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def log_view(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def answering(self) -> bool:
        return any(w.group == "answer" and w.is_running for w in self.workers)

    # background work ----------------------------------------------------------------------------

    @work(group="load")
    async def start_up(self) -> None:
        # The sidebar is filled before the model starts loading: filling it while llama.cpp
        # loads in its thread left it unpainted in real terminals (seen in tmux, not in Pilot).
        await self.show_conversations()
        await self.load_model()
        self.check_alerts()
        try:
            await self.engine.warm_up()
        except AssistantError as exc:
            self.notify(str(exc), title="Indexed folders", severity="error")

    async def load_model(self) -> None:
        try:
            await self.engine.load_model()
        except AssistantError as exc:
            self.status.state = "model failed to load"
            self.notify(str(exc), title="Model", severity="error", timeout=15)
            return
        if not self.answering:
            self.show_backend()
            self.status.state = "ready"

    def show_backend(self) -> None:
        """The status bar names the backend the next answer starts with."""
        backend = self.engine.router.primary(self.backend_choice)
        self.status.model = backend.model_name
        self.status.backend = backend.name
        self.status.remote = bool(getattr(backend, "remote", False))
        self.status.open_breakers = self.engine.router.open_breakers()

    @work(group="history", exclusive=True)
    async def refresh_conversations(self) -> None:
        await self.show_conversations()

    async def show_conversations(self) -> None:
        if self.searching:
            return  # search results stay until Ctrl+N
        try:
            rows = await self.engine.conversations()
        except AssistantError as exc:
            self.notify(str(exc), title="History", severity="error")
            return
        await self.query_one(ConversationList).show(rows, self.conversation_id)

    @on(PromptInput.Submitted)
    def submit(self, event: PromptInput.Submitted) -> None:
        text = event.text.strip()
        if not text:
            return
        event.prompt.clear()
        if command := parse(text):
            self.run_command(*command)
        else:
            self.answer(unescape(text))

    @on(PromptInput.Typed)
    def show_command_hint(self, event: PromptInput.Typed) -> None:
        """While a slash command is typed: every one that matches. With their help, one a line,
        when they fit in a third of the screen; else their names, wrapped (never a partial list)."""
        hint = self.query_one("#slash-hint", Static)
        found = matches(event.text, list(self.commands))
        hint.display = bool(found)
        if not found:
            return
        if len(found) + 1 <= max(3, self.size.height // 3):
            lines = [f"/{n}  {self.commands[n].help}" for n in found] + ["(Tab completes)"]
        else:
            width = max(20, hint.content_region.width or self.size.width - 34)
            lines = [""]
            for name in found:
                word = f"/{name}"
                if lines[-1] and len(lines[-1]) + 2 + len(word) > width:
                    lines.append("")
                lines[-1] += f"  {word}" if lines[-1] else word
            lines.append("(Tab completes · type more for each one's help)")
        hint.update("\n".join(lines))

    @work(group="commands")
    async def load_commands(self) -> None:
        try:
            self.commands = await asyncio.to_thread(self.engine.commands)
        except AssistantError as exc:
            self.notify(str(exc), title="Plugins", severity="error")
        self.prompt.commands = list(self.commands)

    @work(group="commands")
    async def run_command(self, name: str, args: str) -> None:
        """A slash command, built in or a plugin's; it runs in a thread and may ask the app to act."""
        command = self.commands.get(name)
        if command is None:
            known = ", ".join(f"/{n}" for n in sorted(self.commands))
            self.notify(f"Unknown command /{name}. Commands: {known}. (//text sends /text as a question.)",
                        severity="warning", timeout=8)
            return

        def action(what: str, text: str) -> None:
            self.app.call_from_thread(self.command_action, what, text)

        try:
            tools = await asyncio.to_thread(self.engine.tools)
            context = CommandContext(self.conversation_id, tools, action)
            shown = await asyncio.to_thread(command.run, args, context)
        except AssistantError as exc:
            self.notify(str(exc), title=f"/{name}", severity="error")
            return
        except Exception as exc:  # a plugin's bug: reported by name, the app goes on
            self.notify(f"/{name} failed: {type(exc).__name__}: {exc}", title="Plugin", severity="error")
            return
        if shown:  # plain text: a plugin's "[x]" is not markup
            self.notify(str(shown), title=f"/{name}", timeout=10, markup=False)

    def command_action(self, what: str, args: str) -> None:
        """What a slash command asks the app to do."""
        if what == "remember":
            if args:
                self.remember(args)
            else:
                self.notify("Usage: /remember TEXT", severity="warning")
        elif what == "memory":
            self.action_memory()
        elif what == "model":
            self.action_pick_model()
        elif what == "backend":
            self.action_pick_backend()
        elif what == "folders":
            self.action_folders()
        elif what == "export":
            self.export_conversation(args)
        elif what == "incognito":
            self.toggle_incognito()
        elif what == "fork":
            self.fork()
        elif what == "help":  # plain text: "[FILE]" is not markup
            self.notify("\n".join(f"/{n}  {c.help}" for n, c in sorted(self.commands.items())),
                        title="Slash commands", timeout=15, markup=False)

    @work(group="history")
    async def export_conversation(self, target: str) -> None:
        if self.conversation_id is None:
            self.notify("There is no conversation to export yet.", severity="warning")
            return
        from memory.transcripts import to_markdown

        path = Path(target or f"conversation-{self.conversation_id}.md").expanduser()
        try:
            [item] = await self.engine.export_conversations([self.conversation_id])
            await asyncio.to_thread(path.write_text, to_markdown(item) + "\n", "utf-8")
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        except OSError as exc:
            self.notify(f"Cannot write {path}: {exc.strerror}.", severity="error")
            return
        self.notify(f"Exported to {path.resolve()}", timeout=6)

    async def confirm_tool(self, tool: Any, arguments: dict) -> bool:
        """Ask before a tool with side effects runs."""
        question = f"Let the model run {tool.name} with {arguments}?\n{tool.description}"
        return bool(await self.app.push_screen_wait(ConfirmDialog(question)))

    @work(group="memory")
    async def remember(self, text: str) -> None:
        try:
            memory = await self.engine.memories.add(text, conversation_id=self.conversation_id)
        except AssistantError as exc:
            self.notify(str(exc), title="Memory", severity="error")
            return
        self.notify(f"Remembered: {memory['text']}", title="🧠 Memory", timeout=4, markup=False)

    @work(group="memory")
    async def toggle_incognito(self) -> None:
        self.incognito = not self.incognito
        if self.conversation_id is not None:
            try:
                await self.engine.set_incognito(self.conversation_id, self.incognito)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
        self.status.incognito = self.incognito
        self.notify("Incognito: this conversation writes no long-term memory." if self.incognito
                    else "Incognito off.", timeout=4)

    @work(group="history")
    async def fork(self) -> None:
        if self.conversation_id is None:
            self.notify("There is no conversation to fork yet.", severity="warning")
            return
        try:
            message_id = None
            if self.selected is not None and self.selected.response_id is not None:
                message_id = (await self.engine.response(self.selected.response_id))["message_id"]
            new_id = await self.engine.fork(self.conversation_id, message_id)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        await self.open_conversation(new_id)
        self.refresh_conversations()
        self.notify(f"Forked as conversation {new_id}: the original is unchanged.", timeout=4)

    @on(events.ScreenResume)
    def focus_prompt(self) -> None:
        """Back from any dialog or screen, typing goes to the prompt again (not to the list that
        had focus before)."""
        self.prompt.focus()

    def on_key(self, event: events.Key) -> None:
        """A letter typed while the sidebar has focus is the start of a question: it goes to
        the prompt (the sidebar's own keys are Enter, the arrows, F2 and Delete)."""
        if event.is_printable and event.character and isinstance(self.focused, ConversationList):
            event.stop()
            event.prevent_default()
            self.prompt.focus()
            self.prompt.insert(event.character)

    def action_memory(self) -> None:
        from app.screens.memory import MemoryScreen

        self.app.push_screen(MemoryScreen())

    @work(group="memory", exclusive=True)
    async def on_screen_resume(self) -> None:
        """Back from the memory screen: drop the cards of proposals answered there."""
        cards = list(self.query(ProposalCard))
        if not cards:
            return
        try:
            pending = {p["id"] for p in await self.engine.memories.proposals()}
        except AssistantError:
            return
        for card in cards:
            if card.proposal["id"] not in pending:
                await card.remove()

    @on(ProposalAnswered)
    async def proposal_answered(self, event: ProposalAnswered) -> None:
        proposal, text = event.card.proposal, None
        if event.choice == "edit":
            text = await self.app.push_screen_wait(TextDialog("Remember", proposal["text"],
                                                              hint="Enter: remember · Esc: cancel"))
            if not text or not text.strip():
                return
        try:
            if event.choice == "no":
                await self.engine.memories.reject(proposal["id"])
            else:
                memory = await self.engine.memories.accept(proposal["id"], text)
                self.notify(f"Remembered: {memory['text']}", title="🧠 Memory", timeout=4, markup=False)
        except AssistantError as exc:
            self.notify(str(exc), title="Memory", severity="error")
            return
        await event.card.remove()

    def action_regenerate(self) -> None:
        """Ask the last question again, generating anew instead of answering from the cache."""
        questions = list(self.log_view.query(UserMessage))
        if not questions:
            self.notify("There is no question to answer again yet.", severity="warning")
            return
        self.answer(questions[-1].text, regenerate=True)

    @work(group="answer", exclusive=True)
    async def answer(self, question: str, regenerate: bool = False) -> None:
        log = self.log_view
        answer = AnswerMessage()
        await log.query(Welcome).remove()
        await log.mount_all([UserMessage(question), answer])
        log.anchor()  # follow the answer, until the user scrolls up to read
        self.select(None)
        backend = self.engine.router.primary(self.backend_choice)
        self.status.state = "loading model…" if not backend.loaded else "answering…"
        stream = Markdown.get_stream(answer.markdown)
        # A new chat's choice goes with its first question; later it is saved with the conversation.
        choice = self.backend_choice if self.conversation_id is None else None
        try:
            incognito = self.incognito if self.conversation_id is None else None
            asking = self.engine.ask(question, self.conversation_id, choice, regenerate, incognito=incognito,
                                     confirm=self.confirm_tool)
            async with contextlib.aclosing(asking) as events:
                async for event in events:
                    if isinstance(event, Token):
                        await stream.write(event.text)
                    elif isinstance(event, Started):
                        self._started(event)
                        answer.origin = origin_text(event.model, event.backend, event.remote)
                        answer.memories = len(event.memories)
                        answer.tool_steps = event.tool_steps
                        answer.refresh_footer()
                    elif isinstance(event, Finished):
                        await stream.stop()
                        if event.text != answer.markdown.source:  # a citation matching no source was dropped
                            await answer.markdown.update(event.text)
                        answer.text, answer.response_id = event.text, event.response_id
                        answer.cached_from = event.cached_from
                        await answer.show_sources(event.sources)
                        answer.refresh_footer()
                        self.status.ttft_ms = event.timings.ttft_ms
                        self.status.tokens_per_s = event.timings.tokens_per_s
                        used = event.usage.prompt_tokens + event.usage.completion_tokens
                        self.status.context = (used, self.status.context[1] if self.status.context else used)
                        if event.proposals:
                            await log.mount_all([ProposalCard(p) for p in event.proposals])
                    elif isinstance(event, Failed):
                        self.conversation_id = event.conversation_id  # the question is saved there
                        answer.text, answer.response_id = event.partial_text, event.response_id
                        answer.state = "error"
                        self.notify(str(event.error), title="Answer failed", severity="error", timeout=15)
                        if not event.partial_text:
                            self.prompt.restore(question)
        except asyncio.CancelledError:
            answer.state = "stopped"
            answer.text = answer.markdown.source
            # The engine has saved the stopped answer by now (its `finally`, shielded): fetch its
            # id, so it can be rated, traced and forked like any answer.
            with contextlib.suppress(asyncio.CancelledError, AssistantError):
                await self._show_saved(answer)
            raise
        except AssistantError as exc:  # the store failed while saving a stopped answer
            answer.state = "error"
            self.notify(str(exc), title="Answer", severity="error", timeout=15)
            self.prompt.restore(question)
        finally:
            await stream.stop()
            self.status.state = "ready" if backend.loaded else self.status.state
            self.status.open_breakers = self.engine.router.open_breakers()
            self.refresh_conversations()
            self.check_alerts()

    async def _show_saved(self, answer: AnswerMessage) -> None:
        """Give a stopped answer its response id and sources, as reopening it would show them."""
        if self.conversation_id is None:
            return  # stopped before the question was saved
        rows = await self.engine.messages(self.conversation_id)
        last = next((r for r in reversed(rows) if r["role"] == "assistant"), None)
        if last is None or last["response_id"] is None or any(
                a.response_id == last["response_id"] for a in self.log_view.answers()):
            return
        answer.response_id = last["response_id"]
        if answer.is_attached:
            await answer.show_sources(last.get("sources", ()))
        answer.refresh_footer()

    @work(group="alerts", exclusive=True)
    async def check_alerts(self) -> None:
        """Each alert once per session, as a notification (the Stats screen lists them all)."""
        try:
            alerts = await self.engine.alerts()
        except AssistantError:
            return  # the store's own errors are shown where they happen
        for alert in alerts:
            if alert.message not in self.alerts_shown:
                self.alerts_shown.add(alert.message)
                self.notify(alert.message, title="Alert (F3: stats)", severity="warning", timeout=12)

    def _started(self, event: Started) -> None:
        self.conversation_id = event.conversation_id
        self.status.model = event.model
        self.status.backend = event.backend
        self.status.remote = event.remote
        self.status.state = "answering…"
        for note in event.notices:
            self.notify(note, title="Routing", severity="warning", timeout=8)
        if event.similar_question:
            self.notify(f"Answered from a similar earlier question (#{event.cached_from}): "
                        f"“{event.similar_question[:80]}”. F5 answers this one anew.",
                        title="⚡ Cache", timeout=8)
        if event.remote:
            self.notify(f"Sent to {event.backend} ({event.model}) at {event.endpoint}.", title="↗ Remote",
                        timeout=4)
        self.status.context = (event.prompt_tokens, event.n_ctx)
        if event.question_truncated:
            self.notify("The question was too long and was shortened to fit the context window.",
                        severity="warning")
        elif event.dropped_messages:
            self.notify(f"{event.dropped_messages} older messages left out to fit the context window; "
                        "they will be summarized.", severity="information", timeout=4)
        if event.summarized_messages:
            self.status.summarized = event.summarized_messages

    # actions ------------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.answering:
            self.workers.cancel_group(self, "answer")
        elif self.selected is not None:
            self.select(None)

    async def action_new_chat(self) -> None:
        self.workers.cancel_group(self, "answer")
        if self.searching:
            self.searching = False
            self.refresh_conversations()
        self.conversation_id = None
        self.backend_choice = None
        self.incognito = self.status.incognito = False
        self.status.summarized = 0
        self.show_backend()
        self.select(None)
        await self.log_view.clear(welcome=True)
        self.status.context = None
        self.query_one(ConversationList).index = None
        self.prompt.focus()

    @on(ConversationList.Selected)
    async def open_selected(self, event: ConversationList.Selected) -> None:
        item = self.query_one(ConversationList).highlighted_conversation
        if item is not None:
            await self.open_conversation(item.conversation_id)

    async def open_conversation(self, conversation_id: int) -> None:
        self.workers.cancel_group(self, "answer")
        try:
            rows = await self.engine.messages(conversation_id)
            conversation = await self.engine.conversation(conversation_id)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        self.conversation_id = conversation_id
        self.backend_choice = conversation.get("backend")
        self.incognito = self.status.incognito = bool(conversation.get("incognito"))
        self.status.summarized = 0
        self.show_backend()
        self.select(None)
        log = self.log_view
        widgets = []
        for row in rows:
            if row["role"] == "user":
                widgets.append(UserMessage(row["content"]))
            elif row["role"] == "assistant":
                widgets.append(await self._reopened_answer(row))
        await log.clear()
        await log.mount_all(widgets)
        log.scroll_end(animate=False)
        self.prompt.focus()

    async def _reopened_answer(self, row: dict[str, Any]) -> AnswerMessage:
        """An answer from the history, with the footer it had live: who wrote it, its id and
        rating, "stopped" or "failed", a cache hit, the memories it used."""
        origin = origin_text(row.get("model"), row.get("backend"), bool(row.get("remote")))
        answer = AnswerMessage(row["content"], row["response_id"], row.get("sources", ()), origin)
        answer.set_reactive(AnswerMessage.rating, row["rating"])
        state = ""
        if row["status"] == "partial":  # a response row says why; none: the app died mid-answer
            state = "partial"
        if row["response_id"] is not None:
            try:
                response = await self.engine.response(row["response_id"])
            except AssistantError:
                response = {}
            state = {"cancelled": "stopped", "error": "error"}.get(response.get("status"), state)
            answer.cached_from = response.get("cached_from")
            answer.memories = len(json.loads(response.get("memory_ids") or "[]"))
        answer.set_reactive(AnswerMessage.state, state)
        return answer

    def select(self, answer: AnswerMessage | None) -> None:
        if self.selected is not None:
            self.selected.remove_class("-selected")
        self.selected = answer
        if answer is not None:
            answer.add_class("-selected")
            answer.scroll_visible()

    def action_select_answer(self, step: int) -> None:
        answers = [a for a in self.log_view.answers() if a.response_id is not None]
        if not answers:
            return
        if self.selected in answers:
            index = max(0, min(len(answers) - 1, answers.index(self.selected) + step))
        else:
            index = len(answers) - 1
        self.select(answers[index])

    @on(AnswerClicked)
    def answer_clicked(self, event: AnswerClicked) -> None:
        self.select(None if event.answer is self.selected else event.answer)

    def target_answer(self) -> AnswerMessage | None:
        """The selected answer, else the latest one (a stopped answer is an answer too)."""
        if self.selected is not None:
            return self.selected
        answers = self.log_view.answers()
        return answers[-1] if answers else None

    async def saved_target(self, verb: str) -> AnswerMessage | None:
        """The target answer once it has its response row. A stopped answer gets it a moment
        after Esc (waited for here); one still being written has none yet."""
        answer = self.target_answer()
        if answer is None:
            self.notify(f"There is no answer to {verb} yet.", severity="warning")
            return None
        if answer.response_id is None:
            for worker in [w for w in self.workers if w.group == "answer" and w.is_cancelled]:
                with contextlib.suppress(WorkerCancelled, WorkerFailed):
                    await worker.wait()
        if answer.response_id is None:
            self.notify(f"This answer is still being written: {verb} it when it ends (Esc stops it)."
                        if self.answering else f"This answer was not saved: there is nothing to {verb}.",
                        severity="warning")
            return None
        return answer

    @work(group="feedback")
    async def action_rate(self, rating: int) -> None:
        answer = await self.saved_target("rate")
        if answer is None:
            return
        try:
            feedback_id = await self.engine.rate(answer.response_id, rating)
        except AssistantError as exc:
            self.notify(str(exc), title="Feedback", severity="error")
            return
        answer.rating = rating
        comment = await self.app.push_screen_wait(
            TextDialog("Saved. Add a comment? (optional)", placeholder="What was good or wrong?")
        )
        if comment and comment.strip():
            try:
                await self.engine.comment(feedback_id, comment.strip())
            except AssistantError as exc:
                self.notify(str(exc), title="Feedback", severity="error")

    def action_copy_answer(self) -> None:
        answer = self.target_answer()
        text = answer and (answer.text or answer.markdown.source)  # streaming: what came so far
        if not text:
            self.notify("There is no answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify("Answer copied to the clipboard.", timeout=2)

    def action_open_source(self) -> None:
        answer = self.target_answer()
        if answer is None or not answer.sources:
            self.notify("This answer has no sources.", severity="warning")
            return
        self.open_source(answer.sources[0])

    @on(SourceClicked)
    def source_clicked(self, event: SourceClicked) -> None:
        self.open_source(event.source)

    def open_source(self, source: Any) -> None:
        passage = source.passage
        if not Path(passage.path).exists():
            self.notify(f"{passage.path} is gone (moved or deleted since it was indexed).", severity="error")
            return
        if not passage.real_path_inside():
            self.notify(f"{passage.path} now links outside {passage.folder}; not opened.", severity="error")
            return
        if is_paged(passage.path):
            self.app.open_url(Path(passage.path).as_uri())  # the system viewer
            return
        command = editor_command(passage.path, passage.start_line)
        try:
            with self.app.suspend():
                subprocess.run(command, check=False)
        except SuspendNotSupported:
            self.notify(f"Cannot hand the terminal to an editor here: {' '.join(command)}",
                        severity="warning")
        except OSError as exc:
            self.notify(f"Could not start the editor {command[0]!r}: {exc.strerror}. Set $EDITOR.",
                        severity="error")

    def action_folders(self) -> None:
        from app.screens.folders import FoldersScreen

        self.app.push_screen(FoldersScreen(self.conversation_id))

    @work(group="edit")
    async def action_pick_model(self) -> None:
        """Swap the local model: the old one is unloaded, the new one loads in the background."""
        from engine.models import catalog

        settings = self.engine.settings
        rows = await asyncio.to_thread(catalog, settings.model, settings.models_dir)
        local = self.engine.router.backends.get("local")
        current = getattr(local, "model_path", None)
        picked = await self.app.push_screen_wait(ModelDialog(rows, str(current) if current else None))
        if picked is None or picked == str(current):
            return
        if self.answering:
            self.notify("Stop the answer first (Esc), then switch models.", severity="warning")
            return
        self.status.state = "loading model…"
        try:
            backend = await self.engine.switch_model(picked)
        except AssistantError as exc:
            self.status.state = "model failed to load"
            self.notify(str(exc), title="Model", severity="error", timeout=15)
            return
        self.show_backend()
        self.status.state = "ready"
        row = next(row for row in rows if row["path"] == picked)
        keep = (f"model = \"{row['name']}\" in the config file" if row["source"] == "models_dir"
                else f"assistant models use {row['name']}")
        self.notify(f"Now answering with {backend.model_name}. To keep it as the default: {keep}",
                    title="Model", timeout=6)

    @work(group="edit")
    async def action_pick_backend(self) -> None:
        try:
            report = await self.engine.backends_report()
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        picked = await self.app.push_screen_wait(
            BackendDialog(report, self.backend_choice, list(self.engine.settings.backends))
        )
        if picked is None:
            return
        choice = None if picked == AUTOMATIC else picked
        if self.conversation_id is not None:
            try:
                await self.engine.set_conversation_backend(self.conversation_id, choice)
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
                return
        self.backend_choice = choice
        self.show_backend()
        backend = self.engine.router.primary(choice)
        if getattr(backend, "remote", False) and not self.engine.settings.allow_cloud:
            self.notify("Cloud is off: questions stay local until allow_cloud = true is set.",
                        severity="warning", timeout=8)
        else:
            self.notify(f"Next answers: {backend.name} ({backend.model_name}).", timeout=3)

    @work(group="edit")
    async def action_show_trace(self) -> None:
        from app.screens.insights import TraceDialog

        answer = await self.saved_target("trace")
        if answer is None:
            return
        try:
            response, spans = await self.engine.trace(answer.response_id)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        await self.app.push_screen_wait(TraceDialog(response, spans))

    def action_stats(self) -> None:
        from app.screens.insights import StatsScreen

        self.app.push_screen(StatsScreen())

    def action_review(self) -> None:
        from app.screens.insights import ReviewScreen

        self.app.push_screen(ReviewScreen())

    def action_evals(self) -> None:
        from app.screens.evals import EvalsScreen

        self.app.push_screen(EvalsScreen())

    @work(group="search", exclusive=True)
    async def action_search(self) -> None:
        """Search every conversation; the sidebar then lists the ones that match (Ctrl+N: all)."""
        dialog = TextDialog("Search conversations", placeholder="words to find",
                            hint="Enter: search · Esc: cancel")
        query = await self.app.push_screen_wait(dialog)
        if not query or not query.strip():
            return
        try:
            rows = await self.engine.search_conversations(query)
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        sidebar = self.query_one(ConversationList)
        sidebar.display = True
        await sidebar.show(rows, self.conversation_id)
        self.searching = True
        # Focus stays in the prompt: what is typed next is a question, never a key of the list.
        found = "1 conversation mentions" if len(rows) == 1 else f"{len(rows)} conversations mention"
        self.notify(f"{found} “{query.strip()}”: Tab (or a click) to pick one, Enter opens it. "
                    "Ctrl+N shows all again." if rows else f"No conversation mentions “{query.strip()}”.",
                    timeout=6, markup=False)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(ConversationList)
        sidebar.display = not sidebar.display

    def _chosen_conversation(self) -> tuple[int, str] | None:
        sidebar = self.query_one(ConversationList)
        item = sidebar.highlighted_conversation if sidebar.has_focus else None
        if item is not None:
            return item.conversation_id, item.title
        for item in sidebar.query("ConversationItem"):
            if item.conversation_id == self.conversation_id:
                return item.conversation_id, item.title
        return None

    @work(group="edit")
    async def action_rename_conversation(self) -> None:
        chosen = self._chosen_conversation()
        if chosen is None:
            self.notify("Open or highlight a conversation to rename it.", severity="warning")
            return
        title = await self.app.push_screen_wait(TextDialog("Rename conversation", chosen[1],
                                                           hint="Enter: rename · Esc: cancel"))
        if title and title.strip():
            try:
                await self.engine.rename_conversation(chosen[0], title.strip())
            except AssistantError as exc:
                self.notify(str(exc), severity="error")
            self.refresh_conversations()

    @work(group="edit")
    async def action_delete_conversation(self) -> None:
        chosen = self._chosen_conversation()
        if chosen is None:
            self.notify("Open or highlight a conversation to delete it.", severity="warning")
            return
        if not await self.app.push_screen_wait(ConfirmDialog(f"Delete “{chosen[1]}”?")):
            return
        try:
            await self.engine.delete_conversation(chosen[0])
        except AssistantError as exc:
            self.notify(str(exc), severity="error")
            return
        if chosen[0] == self.conversation_id:
            await self.action_new_chat()
        self.refresh_conversations()
