"""The chat app, headless (`App.run_test()`), asking questions until a deadline: the TUI side of the
concurrency soak. Writes JSON: each question with the response id it got, and every error (or
mention of a lock) the app showed the user.

    python -m tests.tui_driver SECONDS OUTPUT.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from app.tui import AssistantApp
from app.widgets.answer import AnswerMessage
from app.widgets.prompt import PromptInput
from engine import Engine, load_settings


async def drive(seconds: float, output: Path) -> None:
    settings = load_settings().replace(max_tokens=16, temperature=0.0, seed=42)
    app = AssistantApp(Engine(settings))
    shown: list[str] = []
    notify = app.notify

    def recording_notify(message: str, **kwargs: Any) -> None:
        # Errors, and anything about a lock; warnings such as a latency alert under load are not faults.
        if kwargs.get("severity") == "error" or "locked" in message.lower():
            shown.append(f"{kwargs.get('title', '')}: {message}")
        notify(message, **kwargs)

    app.notify = recording_notify  # type: ignore[method-assign]
    asked: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    async with app.run_test(size=(120, 40)) as pilot:
        while time.monotonic() < deadline:
            number = len(asked) + 1
            question = f"TUI question {number}: name a colour."
            prompt = app.screen.query_one(PromptInput)
            prompt.focus()
            prompt.load_text(question)
            before = len(app.screen.query(AnswerMessage))  # this conversation's answers so far
            await pilot.press("enter")
            answer: AnswerMessage | None = None
            waited = time.monotonic()
            while time.monotonic() - waited < 180:
                answers = list(app.screen.query(AnswerMessage))
                if len(answers) > before and (answers[-1].response_id is not None or answers[-1].state):
                    answer = answers[-1]
                    break
                await asyncio.sleep(0.05)
            asked.append({"question": question, "response_id": answer.response_id if answer else None,
                          "state": answer.state if answer else "no answer within 180 s",
                          "conversation_id": app.screen.conversation_id})
            if number % 5 == 0:
                await pilot.press("ctrl+n")  # new conversations too, not one ever-growing one
                while len(app.screen.query(AnswerMessage)):
                    await asyncio.sleep(0.05)
    output.write_text(json.dumps({"asked": asked, "shown": shown}))


if __name__ == "__main__":
    asyncio.run(drive(float(sys.argv[1]), Path(sys.argv[2])))
