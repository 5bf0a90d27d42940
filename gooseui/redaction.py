"""Secrets out of what the operator is shown: agent logs, cluster events, failure messages.

The agent logs its whole `MONGODB_URL` and its provider key at start (the real `goose
api-server` does), a crashed agent's last words become its pod's termination message, and
an event can quote either. `redact_text` masks, in this order:

1. **The agent environment's values.** Every value the console injects into the pod (the
   agent Secret, `AgentEnvironment.values`), found wherever it appears verbatim. Skipped:
   values shorter than `MIN_VALUE` characters (masking `auto` or `1` everywhere would
   shred the text and hide nothing: such a value is no secret), except under a key named
   like a secret (`DB_PASSWORD`), down to `MIN_SECRET`, and plain settings
   (`secret_values`: the provider, the model, the mode, ports, numbers and booleans); those
   name what the agent runs with, which is the first thing an operator checks, and appear
   in ordinary words all over a log. A URL value keeps its scheme, host and port (where
   the agent connects is what a connection failure is about) and loses its user's
   password, its path and its query (`mongodb://goose:••••@db:27017/••••`): a query can
   carry credentials too (`authMechanismProperties`, a SAS token).
2. **Credentials in URLs**: `scheme://user:password@host` keeps the user
   (`scheme://user:••••@host`); userinfo without a password (`https://<token>@host`) is
   masked whole. `mongodb+srv://` and every other scheme alike.
3. **Key-shaped strings**, whoever wrote them: `sk-…` (OpenAI, Anthropic), `ghp_…` and
   the other GitHub tokens, `AKIA…`/`ASIA…` (AWS), `xox…-` (Slack), `AIza…` (Google),
   JSON Web Tokens, `Bearer <token>` / `Basic <credentials>`, the value of
   `api_key=…` / `password: …` / `"token": "…"` pairs, and long high-entropy runs (32 or
   more base64 or hex characters that look random; image digests and container ids are
   identifiers, not secrets, and stay).

Redaction is best effort on top of never logging a secret, not a substitute for it: a
secret split across lines, or re-encoded, is not recognised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit

MARK = "\u2022" * 4  # ••••
MIN_VALUE = 6  # shorter values are not looked for
MIN_SECRET = 4  # unless their key is named like a secret; shorter ones never

# settings that name what the agent runs with: never secrets, everywhere in a log
HARMLESS_KEYS = frozenset(
    {
        "GOOSE_PROVIDER",
        "GOOSE_MODEL",
        "GOOSE_MODE",
        "GOOSE_LEAD_PROVIDER",
        "GOOSE_LEAD_MODEL",
        "GOOSE_PLANNER_PROVIDER",
        "GOOSE_PLANNER_MODEL",
        "GOOSE_CONTEXT_STRATEGY",
        "GOOSE_TEMPERATURE",
        "GOOSE_CONTEXT_LIMIT",
        "MONGODB_DATABASE",
        "RUST_LOG",
        "RUST_BACKTRACE",
    }
)
_HARMLESS_SUFFIXES = ("_PORT", "_PROVIDER", "_MODEL", "_MODE", "_TIMEOUT", "_LIMIT")
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIAL|AUTH|SAS|SIGNATURE|COOKIE|SESSION",
    re.IGNORECASE,
)
_PLAIN_VALUE = re.compile(r"^(?:[-+]?\d+(?:\.\d+)?|true|false|yes|no|on|off|null|none)$", re.I)


def harmless(key: str, value: str) -> bool:
    """Whether an agent setting is plain (see the module's docstring): never a key whose
    name sounds secret, whatever its value."""
    if _SECRET_NAME.search(key):
        return False
    upper = key.upper()
    return (
        upper in HARMLESS_KEYS
        or upper.endswith(_HARMLESS_SUFFIXES)
        or bool(_PLAIN_VALUE.match(value.strip()))
    )


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of an agent environment that `redact_text` must mask."""
    return tuple(
        sorted(
            {
                v
                for k, v in env.items()
                if len(v.strip()) >= (MIN_SECRET if _SECRET_NAME.search(k) else MIN_VALUE)
                and not harmless(k, v)
            },
            key=lambda v: (-len(v), v),
        )
    )


# -- URLs ---------------------------------------------------------------------------------

# `scheme://userinfo@`: userinfo runs to the last `@` before the authority ends (a password
# with an unencoded `@` is still all masked)
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^\s/?#@]*(?:@[^\s/?#@]*)*)@"
)


def mask_url_credentials(text: str, mark: str = MARK) -> str:
    """Every `scheme://user:password@` with the password masked, userinfo without a
    password masked whole."""

    def masked(m: re.Match[str]) -> str:
        user, colon, _ = m["info"].partition(":")
        if colon and user and "@" not in user:
            return f"{m['scheme']}{user}:{mark}@"
        return f"{m['scheme']}{mark}@"

    return _URL_USERINFO.sub(masked, text)


def _masked_value(value: str, mark: str) -> str:
    """What a secret value becomes: a URL keeps where it points, anything else is `mark`."""
    if "://" not in value or any(c.isspace() for c in value):
        return mark
    try:
        parts = urlsplit(value)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return mark
    if not parts.scheme or not host:
        return mark
    shown = f"{parts.scheme}://"
    if "@" in parts.netloc:
        shown = mask_url_credentials(f"{parts.scheme}://{parts.netloc.rpartition('@')[0]}@", mark)
    shown += host
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        shown += "/" + mark
    return shown


@lru_cache(maxsize=32)
def _value_pattern(
    values: tuple[str, ...], mark: str
) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """One alternation of the values, longest first (a value inside another is not left
    half-shown), and what each becomes; a URL with nothing to hide is not looked for."""
    replacement = {v: _masked_value(v, mark) for v in values}
    kept = [v for v in values if replacement[v] != v]
    pattern = re.compile("|".join(re.escape(v) for v in kept)) if kept else None
    return pattern, replacement


# -- key shapes ---------------------------------------------------------------------------

_SHAPES = [
    # vendor key formats
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # a JWT
]
# `Bearer <token>`, `Basic <base64>`: the scheme stays
_AUTH_SCHEME = re.compile(
    r"\b(?P<scheme>[Bb]earer|[Bb]asic)(?P<gap>\s+)(?P<token>[A-Za-z0-9_.~+/=-]{8,})"
)


def _a_word(token: str) -> bool:
    """`Basic authentication`, `Bearer Tokens`: prose, not credentials."""
    return token.isalpha() and (token.islower() or token[1:].islower())


# `api_key=…`, `password: …`, `"token": "…"`, `OPENAI_API_KEY: …`: the name and separator
# stay, the value goes (up to a quote, space, comma, semicolon or ampersand)
_PAIR = re.compile(
    r"(?P<key>api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?key)?|token|password|passwd|"
    r"pwd|credentials?|private[_-]?key|auth(?:orization)?|sas|signature)"
    r"(?P<sep>[\"']?\s*[=:]\s*[\"']?)"
    r"(?!(?:[Bb]earer|[Bb]asic)\s)"
    r"(?P<value>[^\s\"',;&\u2022]+)",
    re.IGNORECASE,
)
# what a pair says when there is no secret (`BLACKBOX_API_KEY: unset`, as the agent logs it)
_PLACEHOLDER = re.compile(
    r"^(?:unset|not[-_]?set|none|null|nil|empty|undefined|true|false|\*+|Err\(NotPresent\))$",
    re.IGNORECASE,
)
_PAIR_WORDS = ("key", "secret", "token", "pass", "pwd", "credential", "auth", "sas", "signature")
# runs of base64/hex characters: judged one by one (`_random_looking`)
_RUN = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")
# an image digest or a container id (`containerd://…`) names something, it opens nothing
_IDENTIFIER_PREFIXES = ("sha256:", "sha512:", "sha1:", "://")


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _random_looking(run: str) -> bool:
    """A key-like run: hex with letters and digits, or base64 mixing cases and digits
    with the entropy of random data (a path or a word run together has far less)."""
    core = run.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", core):
        return any(c.isdigit() for c in core) and any(c.isalpha() for c in core)
    if core.count("/") > len(core) // 8:
        return False  # a path, not a key
    classes = sum(
        (
            any(c.islower() for c in core),
            any(c.isupper() for c in core),
            any(c.isdigit() for c in core),
        )
    )
    return classes == 3 and _entropy(core) >= 4.0


def _mask_runs(text: str, mark: str) -> str:
    def masked(m: re.Match[str]) -> str:
        before = text[max(0, m.start() - 16) : m.start()]
        if before.endswith(_IDENTIFIER_PREFIXES):
            return m[0]
        return mark if _random_looking(m[0]) else m[0]

    return _RUN.sub(masked, text)


def mask_key_shapes(text: str, mark: str = MARK) -> str:
    """Step 3 of `redact_text`: whatever looks like a credential."""
    for shape in _SHAPES:
        text = shape.sub(mark, text)
    text = _AUTH_SCHEME.sub(
        lambda m: m[0] if _a_word(m["token"]) else f"{m['scheme']}{m['gap']}{mark}", text
    )
    lowered = text.lower()
    if any(word in lowered for word in _PAIR_WORDS):  # most lines have none: skip the regex
        text = _PAIR.sub(
            lambda m: (
                m[0]
                if m["value"] == mark or _PLACEHOLDER.match(m["value"])
                else f"{m['key']}{m['sep']}{mark}"
            ),
            text,
        )
    return _mask_runs(text, mark)


# -- all of it ----------------------------------------------------------------------------


def redact_text(text: str, values: Iterable[str], mark: str = MARK) -> str:
    """`text` with the secrets of the agent environment and anything key-shaped masked.

    `values` are the environment's values (`secret_values` of it, or any strings: those
    shorter than `MIN_SECRET` are ignored).
    """
    if not text:
        return text
    wanted = tuple(sorted({v for v in values if len(v) >= MIN_SECRET}, key=lambda v: (-len(v), v)))
    if wanted:
        pattern, replacement = _value_pattern(wanted, mark)
        if pattern is not None:
            text = pattern.sub(lambda m: replacement[m[0]], text)
    # URLs before key shapes: `scheme://token:pw@host` is a user and a password, not a
    # `token: …` pair swallowing the host
    text = mask_url_credentials(text, mark)
    return mask_key_shapes(text, mark)
