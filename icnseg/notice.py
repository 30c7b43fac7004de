"""One-line notices on stderr for fallbacks the user should know about, each shown once."""

from __future__ import annotations

import sys
import threading

_seen: set[str] = set()
_lock = threading.Lock()


def notice(message: str) -> bool:
    """Print ``icnseg: <message>`` to stderr unless already shown; True when printed."""
    line = " ".join(message.split())  # always one line
    with _lock:
        if line in _seen:
            return False
        _seen.add(line)
    print(f"icnseg: {line}", file=sys.stderr)
    return True
