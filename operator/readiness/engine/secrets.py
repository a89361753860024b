"""What makes a literal env value look like a secret: the one list of patterns.

A variable's name says it holds a secret when, lowercased with ``_``, ``-`` and ``.`` taken
out, it contains one of ``SECRET_WORDS``; names that point at a file (``*_FILE``, ``*_PATH``,
``*_DIR``) hold a path, not the secret. Whatever its name, a value that is a URL with a
password in it (``scheme://user:password@host``) is one too. The finding names the variable
and never the value.
"""

from __future__ import annotations

import re

SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "privatekey", "credential")
FILE_SUFFIXES = ("_FILE", "_PATH", "_DIR")
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)


def secret_reason(name: str, value: str) -> str | None:
    """Why the literal ``value`` of variable ``name`` looks like a secret, or None."""
    if _URL_WITH_PASSWORD.search(value):
        return "a URL with a password in it"
    if not value or name.upper().endswith(FILE_SUFFIXES):
        return None
    folded = re.sub(r"[_\-.]", "", name.lower())
    word = next((w for w in SECRET_WORDS if w in folded), None)
    return None if word is None else f"its name says {word}"
