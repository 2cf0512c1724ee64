"""Screenshots of the real chat app for the README, as SVG, taken with Textual's Pilot:
the embedded model answering over an indexed folder, and the model picker.

    python docs/screenshots.py          # writes docs/screenshots/*.svg

Runs in a scratch data folder (nothing of yours is read or shown); deterministic answers
(temperature 0, a fixed seed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
SCRATCH = Path(tempfile.gettempdir()) / "assistant-demo"
NOTES = {
    "launch.md": "# Heron launch\n\nThe launch is code-named Blue Heron. It ships on 3 March, after the "
    "security review on 24 February. Owner: Dana.\n",
    "budget.md": "# Budget 2025\n\nWe decided to keep the cloud budget under 40 EUR a month and to run "
    "models locally where we can.\n",
    "todo.txt": "Book the venue. Send the invitations. Ask Dana about the review slot.\n",
}


async def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.05)


async def main() -> None:
    shutil.rmtree(SCRATCH, ignore_errors=True)
    notes = SCRATCH / "notes"
    notes.mkdir(parents=True)
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    os.environ["ASSISTANT_HOME"] = str(SCRATCH / "data")
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, str(ROOT))

    from app.screens.chat import ChatScreen
    from app.screens.modals import ModelDialog
    from app.tui import AssistantApp
    from app.widgets.prompt import PromptInput
    from engine import Engine, load_settings
    from engine.models import default_model_path
    from engine.registry import Registry

    settings = load_settings().replace(temperature=0.0, seed=7, max_tokens=80, plugins=False)
    engine = Engine(settings)
    knowledge = await engine.knowledge()
    await asyncio.to_thread(knowledge.index, notes)
    Registry().add(default_model_path(), name="smollm2-135m", sha256="0" * 64)
    OUT.mkdir(exist_ok=True)

    app = AssistantApp(engine)
    async with app.run_test(size=(110, 32)) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(lambda: screen.status.state == "ready")
        prompt = screen.query_one(PromptInput)
        prompt.load_text("What is the code name of the launch?")
        await pilot.press("enter")
        await wait_for(lambda: screen.status.state == "ready" and screen.status.tokens_per_s is not None)
        await pilot.pause(0.5)
        app.save_screenshot("chat.svg", str(OUT))

        await pilot.press("f9")
        await wait_for(lambda: isinstance(app.screen, ModelDialog))
        await pilot.pause(0.3)
        app.save_screenshot("models.svg", str(OUT))
        await pilot.press("escape")
    for svg in sorted(OUT.glob("*.svg")):
        print(f"wrote {svg.relative_to(ROOT)} ({svg.stat().st_size // 1024} kB)")
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
