"""The chat screen: past conversations on the left, the conversation, the prompt, a status bar.

This module streams answers and acts on them (select, rate, copy, open a source); the screen's
other jobs are its parts: chat_commands (slash commands), chat_conversations (the sidebar, opening,
renaming, deleting), chat_panels (the screens and dialogs it opens); its keys are in chat_keys.

Its first frame needs Textual and our light widgets only: the engine (built by the App in a thread,
see `started`) and the answers' widgets (Markdown, app/widgets/answer.py) come a moment after it,
while the prompt already takes keys; what needs them waits for them (issue 20: launch time)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static
from textual.worker import WorkerCancelled, WorkerFailed

from app.editor import editor_command, is_paged
from app.indexing import IndexingJobs
from app.screens.base import show_error
from app.screens.chat_commands import ChatCommands
from app.screens.chat_conversations import ChatConversations
from app.screens.chat_keys import chat_bindings
from app.screens.chat_panels import ChatPanels
from app.screens.modals import ConfirmDialog, TextDialog
from app.slash import parse, unescape
from app.widgets.chat_log import ChatLog, UserMessage, Welcome, origin_text
from app.widgets.conversation_list import ConversationList
from app.widgets.prompt import PromptInput
from app.widgets.status_bar import StatusBar
from engine import AssistantError

if TYPE_CHECKING:
    from app.widgets.answer import AnswerClicked, AnswerMessage, ProposalAnswered, SourceClicked
    from engine import Engine, Started
    from plugins.hookspecs import Command


class ChatScreen(ChatCommands, ChatConversations, ChatPanels):
    AUTO_FOCUS = "#prompt"
    # Below 100 columns the sidebar starts hidden (Ctrl+S shows it): the conversation gets the width.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = chat_bindings()

    def __init__(self, engine: Engine | None, jobs: IndexingJobs) -> None:
        super().__init__(engine)  # type: ignore[arg-type]  # None: the App's, once built (`started`)
        self.jobs = jobs  # the App's indexing and watching, read by the folders screen
        self.conversation_id: int | None = None
        self.selected: AnswerMessage | None = None
        self.backend_choice: str | None = None  # None: the configured route
        self.alerts_shown: set[str] = set()
        self.searching = False  # the sidebar shows search results, not the latest conversations
        self.incognito = False  # this conversation writes no long-term memory
        self.commands: dict[str, Command] = {}  # slash commands, built in and the plugins'
        self.commands_loaded = asyncio.Event()  # a slash command sent earlier waits for them
        # Held, not queried: a worker still finishing while the app closes sets it harmlessly,
        # where a query would raise NoMatches once the screen's children are gone.
        self.status = StatusBar(id="status")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList(id="sidebar")
            with Vertical(id="main"):
                yield ChatLog(Welcome(), id="log")
                yield Static("", id="slash-hint", markup=False)
                yield PromptInput(id="prompt")
        yield self.status
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "indexing_text", lambda text: setattr(self.status, "indexing", text))
        if self.engine is not None:
            self.show_backend()
        self.query_one("#slash-hint").display = False
        # After the first frame: the engine, the database, plugins and model load in threads that
        # contend for the GIL, and started now they held back the first paint.
        self.call_after_refresh(self.start_up)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def log_view(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def answering(self) -> bool:
        return any(w.group == "answer" and w.is_running for w in self.workers)

    # background work ----------------------------------------------------------------------------

    async def started(self) -> Engine:
        """The engine. `assistant` has the App build it in a thread after the first frame, so the
        prompt takes keys at once; whatever needs the engine waits for it here (at launch only,
        a moment). The App runs a key pressed that early once it is there (AssistantApp.run_action)."""
        if self.engine is None:
            self.engine = await self.app.started()  # type: ignore[attr-defined]
            self.show_backend()
        return self.engine

    @work(group="load")
    async def start_up(self) -> None:
        await self.started()
        self.load_commands()
        # The sidebar is filled before the model starts loading: filling it while llama.cpp
        # loads in its thread left it unpainted in real terminals (seen in tmux, not in Pilot).
        # Meanwhile the answers' widgets are imported in a thread, not on the event loop when the
        # first answer (or a reopened conversation) needs them.
        await asyncio.gather(self.show_conversations(),
                             asyncio.to_thread(importlib.import_module, "app.widgets.answer"))
        await self.load_model()
        if not self.is_attached:
            return
        self.check_alerts()
        try:
            await self.engine.warm_up()
        except AssistantError as exc:
            show_error(self, exc, "Indexed folders")

    async def load_model(self) -> None:
        try:
            await self.engine.load_model()
        except AssistantError as exc:
            if not self.is_attached:
                return  # the app closed while the model loaded: there is no status bar to update
            self.status.state = "model failed to load"
            show_error(self, exc, "Model", timeout=15)
            return
        if not self.is_attached:
            return  # the app closed while the model loaded: there is no status bar to update
        if not self.answering:
            self.show_backend()
            self.status.state = "ready"

    def show_backend(self) -> None:
        """The status bar names the backend the next answer starts with."""
        backend = self.engine.router.primary(self.backend_choice)
        self.status.model = backend.model_name
        self.status.backend = backend.name
        self.status.remote = backend.remote
        self.status.open_breakers = self.engine.router.open_breakers()

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

    async def confirm_tool(self, tool: Any, arguments: dict) -> bool:
        """Ask before a tool with side effects runs."""
        question = f"Let the model run {tool.name} with {arguments}?\n{tool.description}"
        return bool(await self.app.push_screen_wait(ConfirmDialog(question)))

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

    @work(group="memory", exclusive=True)
    async def on_screen_resume(self) -> None:
        """Back from the memory screen: drop the cards of proposals answered there."""
        cards = list(self.query("ProposalCard"))  # by name: none before the answers' module is loaded
        if not cards:
            return
        try:
            pending = {p["id"] for p in await self.engine.memories.proposals()}
        except AssistantError:
            return
        for card in cards:
            if card.proposal["id"] not in pending:  # type: ignore[attr-defined]
                await card.remove()

    async def on_proposal_answered(self, event: ProposalAnswered) -> None:
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
            show_error(self, exc, "Memory")
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
        from app.widgets.answer import AnswerMessage, ProposalCard
        from engine import Failed, Finished, Started, Token

        log = self.log_view
        answer = AnswerMessage()
        await log.query(Welcome).remove()
        await log.mount_all([UserMessage(question), answer])
        log.anchor()  # follow the answer, until the user scrolls up to read
        self.select(None)
        stream = answer.markdown_stream()
        try:  # asked before the engine was there (typed at launch): shown at once, answered when it is
            await self.started()
        except asyncio.CancelledError:  # Esc or a new chat meanwhile: nothing was asked yet
            answer.state = "stopped"
            await stream.stop()
            raise
        backend = self.engine.router.primary(self.backend_choice)
        self.status.state = "loading model…" if not backend.loaded else "answering…"
        # A new chat's choice goes with its first question; later it is saved with the conversation.
        choice = self.backend_choice if self.conversation_id is None else None
        asked: list[int] = []  # the question's message id, once saved

        def saved(conversation_id: int, question_id: int) -> None:
            self.conversation_id = conversation_id  # known even if stopped before any event
            asked.append(question_id)

        try:
            incognito = self.incognito if self.conversation_id is None else None
            asking = self.engine.ask(question, self.conversation_id, choice, regenerate, incognito=incognito,
                                     confirm=self.confirm_tool, saved=saved)
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
                        answer.groundedness = event.groundedness
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
                await self._show_saved(answer, asked[0] if asked else None)
            raise
        except AssistantError as exc:  # the store failed while saving a stopped answer
            answer.state = "error"
            show_error(self, exc, "Answer", timeout=15)
            self.prompt.restore(question)
        finally:
            await stream.stop()
            self.status.state = "ready" if backend.loaded else self.status.state
            self.status.open_breakers = self.engine.router.open_breakers()
            self.refresh_conversations()
            self.check_alerts()

    async def _show_saved(self, answer: AnswerMessage, question_id: int | None) -> None:
        """Give a stopped answer its response id, origin and sources, as reopening it would show
        them; also when it was stopped before the engine's first event (no text, no origin yet)."""
        if question_id is None or self.conversation_id is None:
            return  # the engine saves the question first: stopped before ask() ran at all
        response = await self.engine.history.answer_to(question_id)
        if response is None:
            return
        answer.response_id = response["id"]
        if not answer.origin:
            answer.origin = origin_text(response.get("model"), response.get("backend"),
                                        bool(response.get("remote")))
        rows = await self.engine.history.messages(self.conversation_id)
        row = next((r for r in rows if r.get("response_id") == response["id"]), {})
        if answer.is_attached:
            saved_text = row.get("content")
            if saved_text and saved_text != answer.markdown.source:  # words decoded as Esc landed:
                answer.text = saved_text  # shown as saved, the way reopening shows them
                await answer.markdown.update(saved_text)
            await answer.show_sources(row.get("sources", ()))
        answer.refresh_footer()

    @work(group="alerts", exclusive=True)
    async def check_alerts(self) -> None:
        """Each alert once per session, as a notification (the Stats screen lists them all)."""
        try:
            alerts = await self.engine.history.alerts()
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

    def on_answer_clicked(self, event: AnswerClicked) -> None:
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
            feedback_id = await self.engine.history.rate(answer.response_id, rating)
        except AssistantError as exc:
            show_error(self, exc, "Feedback")
            return
        answer.rating = rating
        comment = await self.app.push_screen_wait(
            TextDialog("Saved. Add a comment? (optional)", placeholder="What was good or wrong?")
        )
        if comment and comment.strip():
            try:
                await self.engine.history.comment(feedback_id, comment.strip())
            except AssistantError as exc:
                show_error(self, exc, "Feedback")

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

    def on_source_clicked(self, event: SourceClicked) -> None:
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
