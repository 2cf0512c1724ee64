"""A full disk, for real: run inside a private mount namespace with a small tmpfs mounted at MOUNT
(tests/test_resources.py starts it with `unshare`). The data folder lives on the tmpfs; a filler
file takes every free byte; then `assistant ask`, `index` and `backup` run. Prints JSON: what
each command said, and what survived once space is freed. Then the disk is left nearly full
(256 kB free) and a folder of 200 files is indexed, so the space runs out mid-way (in SQLite or
in Chroma), and again what survived.

    python -m tests.diskfull MOUNT FOLDER_TO_INDEX BIG_FOLDER
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults import ROOT, env_for, integrity, rows, run


def fill(mount: Path) -> Path:
    """Write until the filesystem refuses (ENOSPC), in ever smaller blocks down to one byte."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as fh:
        block = 1 << 20
        while block:
            try:
                fh.write(b"\0" * block)
            except OSError:
                block //= 2
    return filler


def attempt(home: Path, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env_for(home, ASSISTANT_MAX_TOKENS="8"), timeout=600)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def main(mount: Path, folder: Path, big: Path) -> dict[str, object]:
    home = mount / "home"
    run(home, "ask", "First question: what is a GGUF file?", ASSISTANT_MAX_TOKENS="8")
    db = home / "assistant.db"
    before = rows(db, "SELECT id, role, content FROM messages")
    filler = fill(mount)
    result: dict[str, object] = {
        "ask": attempt(home, "ask", "-c", "1", "Second question, asked on a full disk?"),
        "index": attempt(home, "index", str(folder)),
        "backup": attempt(home, "backup", str(mount / "backup.db")),
        "backup_left": sorted(p.name for p in mount.glob("*backup*")),
    }
    filler.unlink()
    result["integrity"] = integrity(db)
    result["earlier_turns_kept"] = rows(db, "SELECT id, role, content FROM messages")[: len(before)] == before
    result["after"] = {
        "ask": attempt(home, "ask", "-c", "1", "Third question, with space again?"),
        "index": attempt(home, "index", str(folder), "--json"),
    }
    result["integrity_after"] = integrity(db)
    result["messages"] = rows(db, "SELECT role, content FROM messages ORDER BY id")
    filler = fill(mount)
    size = filler.stat().st_size
    filler.write_bytes(b"\0" * max(0, size - 256_000))  # 256 kB left: the next index runs out mid-way
    result["nearly_full_index"] = attempt(home, "index", str(big))
    filler.unlink()
    result["integrity_nearly_full"] = integrity(db)
    result["resumed_index"] = attempt(home, "index", str(big), "--json")
    result["chunks"] = rows(db, "SELECT COUNT(*) FROM chunks c JOIN files f ON f.id = c.file_id"
                                " JOIN folders d ON d.id = f.folder_id WHERE d.path = ?", (str(big.resolve()),))[0][0]
    result["files"] = rows(db, "SELECT COUNT(*) FROM files WHERE state = 'indexed'")[0][0]
    from tests.faults import chroma_ids

    result["sqlite_equals_chroma"] = {r[0] for r in rows(db, "SELECT id FROM chunks")} == chroma_ids(home)
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))))
