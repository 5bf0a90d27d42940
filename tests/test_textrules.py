"""The published name and message patterns mean exactly what the service checks.

Both regex dialects that read a JSON Schema pattern are held to the checks: Python's (what
Schemathesis generates from) and the Rust one of `jsonschema-rs` (ECMA-262 semantics).
"""

from __future__ import annotations

import re
import unicodedata

import jsonschema_rs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gooseui import textrules

# the characters the rules turn on, so that generated text meets them often
EDGES = (
    "".join(map(chr, sorted(textrules.space()))) + "\x00\x7f\x85\xad\u200b\u2028\ufeff\U000e0001é"
)
# Unicode text, as JSON Schema means it: lone surrogates are tested on their own below
CHARS = st.characters(exclude_categories=["Cs"])
TEXT = st.text(CHARS) | st.text(st.sampled_from(EDGES) | CHARS, max_size=8)
LONG = st.builds(
    lambda pad, core, tail: pad + core + tail,
    st.text(st.sampled_from(" \t\u3000"), max_size=3),
    st.text(st.sampled_from("ab é") | CHARS, min_size=97, max_size=103),
    st.text(st.sampled_from(" \n"), max_size=3),
)


def _validator(pattern: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({"type": "string", "pattern": pattern})


@settings(max_examples=400, deadline=None)
@given(TEXT | LONG)
@example("  café  ")
@example("a" * 100)
@example("a" * 101)
@example("a\tb")
@example("\u200bx")
def test_name_pattern_is_the_name_check(raw: str) -> None:
    valid = textrules.name_problem(raw) is None
    assert bool(re.search(textrules.name_pattern(), raw)) == valid, repr(raw)
    assert _validator(textrules.name_pattern()).is_valid(raw) == valid, repr(raw)


@settings(max_examples=300, deadline=None)
@given(TEXT)
@example(" \t\n")
@example("\u3000x")
@example("")
def test_message_pattern_is_the_message_check(message: str) -> None:
    valid = textrules.message_problem(message) is None
    assert bool(re.search(textrules.message_pattern(), message)) == valid, repr(message)
    assert _validator(textrules.message_pattern()).is_valid(message) == valid, repr(message)


def test_lone_surrogates_and_size() -> None:
    assert textrules.name_problem("a\ud800b") and textrules.message_problem("a\udfffb")
    assert textrules.message_problem("x" * textrules.MAX_MESSAGE) is None
    assert textrules.message_problem("x" * (textrules.MAX_MESSAGE + 1))[0] == "MessageTooLarge"
    # a name is stored in NFC, whichever way it was typed
    assert textrules.normal_name(" cafe\u0301 ") == unicodedata.normalize("NFC", "café")
