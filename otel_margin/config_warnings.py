"""Configuration problems are logged once per process, however many instrumentors read them.

Every instrumentor reads the policy file and the environment when it is instrumented
(``Settings.load``), so with the OpenAI and the Anthropic instrumentors a bad value would be
reported twice, and again at each instrument cycle. :func:`warn_once` logs a given message the
first time only; a different message (another value, another file) is logged again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_MAX_REMEMBERED = 1024
"""Messages remembered as logged; they carry outside values (paths, settings), so the set is bounded."""

_logged: set[tuple[str, int, str]] = set()
_lock = threading.Lock()


def warn_once(logger: logging.Logger, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message % args`` on ``logger`` at ``level``, unless this process already logged that text."""
    text = message % args if args else message
    key = (logger.name, level, text)
    with _lock:
        if key in _logged:
            return
        if len(_logged) >= _MAX_REMEMBERED:
            _logged.clear()
        _logged.add(key)
    logger.log(level, message, *args)
