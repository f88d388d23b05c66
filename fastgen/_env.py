"""The package's on/off environment variables (``FASTGEN_*``), read one way everywhere.

``1``, ``true``, ``yes``, ``on`` turn a flag on; unset, empty, ``0``, ``false``, ``no``, ``off``
leave it off (any case). Anything else is an error naming the variable: a typo such as
``FASTGEN_REQUIRE_EXT=ture`` must not pass silently for "off".
"""

from __future__ import annotations

import os

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to an "on" value."""
    value = os.environ.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"environment variable {name} must be one of 1/true/yes/on or 0/false/no/off, "
                     f"got {os.environ[name]!r}")
