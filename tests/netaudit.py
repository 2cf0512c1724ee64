"""Run the `assistant` command with every network call recorded: an audit hook (PEP 578) sees each
socket connect, bind, send and name lookup before it happens, whatever library makes it.

    python -m tests.netaudit LOG.jsonl ask "question"

LOG.jsonl gets one line per call: the event, the socket family, the address. AF_UNIX sockets
(asyncio's own wake-up pair, local IPC) are recorded with their family so a test can tell them apart.
"""

from __future__ import annotations

import json
import socket
import sys

EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
          "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}


def main() -> None:
    log = open(sys.argv[1], "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open until exit

    def hook(event: str, args: tuple) -> None:
        if event not in EVENTS:
            return
        family = None
        if args and isinstance(args[0], socket.socket):
            family = args[0].family.name
        log.write(json.dumps({"event": event, "family": family, "args": [repr(a) for a in args[1:]]}) + "\n")

    sys.addaudithook(hook)
    from app.cli import main as assistant

    sys.argv = ["assistant", *sys.argv[2:]]
    assistant()


if __name__ == "__main__":
    main()
