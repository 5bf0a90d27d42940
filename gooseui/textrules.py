"""What a project name and a chat message may be, written once for the checks and the schema.

The service checks these rules and says which one failed; the OpenAPI document publishes
them as JSON Schema patterns, so that a client (or a fuzzer) knows beforehand what will be
accepted. Both come from here, and a test holds the checks and the patterns to each other.

The character classes are listed out rather than written `\\s` or `\\p{Cc}`: the two regex
dialects that read a JSON Schema pattern (ECMA-262 and Python's) disagree on `\\s`, and
Python has no `\\p{...}`. Listed from Python's own Unicode database, the patterns mean what
`str.strip()` and `unicodedata.category()` mean, in either dialect.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache

MAX_NAME = 100
"""Characters in a project name, counted as sent with surrounding whitespace trimmed."""

MAX_MESSAGE = 65_536
"""Characters in a chat message (code points; at most 256 KiB of UTF-8)."""

NAME_FORBIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Control and format characters, line and paragraph separators, lone surrogates."""


def _chars(predicate: Callable[[str], bool]) -> frozenset[int]:
    return frozenset(code for code in range(sys.maxunicode + 1) if predicate(chr(code)))


def _escape(code: int) -> str:
    # astral characters stand as themselves: `\U…` is Python's and `\u{…}` ECMA's spelling
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def char_class(codes: Iterable[int], *, negate: bool = False) -> str:
    """A regex character class of the code points, in runs."""
    runs: list[list[int]] = []
    for code in sorted(set(codes)):
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    parts = (_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in runs)
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


SURROGATES = frozenset(range(0xD800, 0xE000))
"""Left out of the patterns: a JSON Schema string is Unicode text, which has no lone
surrogates, and validators built on Unicode scalar values (Rust's, for one) refuse a
pattern that names them. The checks refuse them; the descriptions say so."""


@cache
def space() -> frozenset[int]:
    """What `str.strip()` takes away."""
    return _chars(str.isspace)


@cache
def forbidden() -> frozenset[int]:
    """Forbidden in a name, surrogates aside (see `SURROGATES`)."""
    return _chars(lambda c: unicodedata.category(c) in NAME_FORBIDDEN) - SURROGATES


@cache
def name_pattern() -> str:
    """A name: 1 to MAX_NAME characters once trimmed, none of them forbidden."""
    edge = char_class(space() | forbidden(), negate=True)  # a name's first and last character
    inner = char_class(forbidden(), negate=True)
    blank = char_class(space())
    return rf"^{blank}*{edge}(?:{inner}{{0,{MAX_NAME - 2}}}{edge})?{blank}*$"


@cache
def message_pattern() -> str:
    """A message: at least one character that is not whitespace (JSON Schema patterns search)."""
    return char_class(space(), negate=True)


def name_problem(raw: str) -> str | None:
    """Why `raw` cannot be a project name, or None when it can."""
    name = raw.strip()
    if not name:
        return "The project name must not be empty."
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "The project name must be Unicode text (it holds a lone surrogate)."
    if len(name) > MAX_NAME:
        return f"The project name must be at most {MAX_NAME} characters (it has {len(name)})."
    if any(unicodedata.category(c) in NAME_FORBIDDEN for c in name):
        return "The project name must not contain control characters."
    return None


def normal_name(raw: str) -> str:
    """The stored spelling of a valid name: trimmed, NFC (`café` is one name however typed)."""
    return unicodedata.normalize("NFC", raw.strip())


def message_problem(message: str) -> tuple[str, str] | None:
    """`(code, reason)` when `message` cannot be sent, or None when it can."""
    if not message.strip():
        return "EmptyMessage", "The message must not be empty."
    if any(0xD800 <= ord(c) <= 0xDFFF for c in message):
        return "InvalidMessage", "The message must be Unicode text (it holds a lone surrogate)."
    if len(message) > MAX_MESSAGE:
        return (
            "MessageTooLarge",
            f"The message has {len(message)} characters; at most {MAX_MESSAGE} are allowed.",
        )
    return None
