"""The frozen app's entry point (PyInstaller runs a script, not a console_scripts entry)."""

import multiprocessing

from app.launch import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # torch and chromadb may start helper processes
    main(prog_name="assistant")
