"""Where pudimd keeps its state when the operator does not say."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_state_dir"]


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` (``StateDirectory=pudimd``), else
    ``$XDG_STATE_HOME/pudimd``, else ``~/.local/state/pudimd``."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "pudimd"
