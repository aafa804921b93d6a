"""Small facts about processes, asked of the kernel."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """True while a process has this pid, ours or another user's (which we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
