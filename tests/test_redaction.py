"""Secrets out of what the operator reads: agent logs, cluster events, failure messages."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gooseui.cluster.agentenv import mask_url, redact
from gooseui.redaction import MARK, harmless, redact_text, secret_values

ENV = {
    "MONGODB_URL": "mongodb://goose:s3cr3t-pw@db.example:27017/goose?authSource=admin",
    "GOOSE_PROVIDER": "openai",
    "GOOSE_MODEL": "gpt-4o-mini",
    "GOOSE_MODE": "auto",
    "OPENAI_API_KEY": "sk-live-5f0c1e9b7d2a4c3e",
    "OPENAI_HOST": "https://llm.example",
    "OPENAI_BASE_PATH": "v1/chat/completions",
    "SHORT": "abc",
    "X_PORT": "3001",
}

# lines as the real agent logs them at start (tracing's format)
READY = [
    "2026-01-01T12:00:00.000001Z  INFO goose_cli::commands::api_server: ✨ Goose API Server Ready!",
    "2026-01-01T12:00:00.000002Z  INFO goose_cli::commands::api_server: 📊 Database: goose "
    f"({ENV['MONGODB_URL']})",
    "2026-01-01T12:00:00.000003Z  INFO goose_cli::commands::api_server: OPENAI_API_KEY: "
    f"{ENV['OPENAI_API_KEY']}",
    "2026-01-01T12:00:00.000004Z  INFO goose_cli::commands::api_server: GOOSE_MODEL: gpt-4o-mini",
]


def test_the_agents_start_up_lines_lose_its_secrets_and_keep_the_rest() -> None:
    values = secret_values(ENV)
    shown = [redact_text(line, values) for line in READY]
    text = "\n".join(shown)
    assert "s3cr3t-pw" not in text and ENV["OPENAI_API_KEY"] not in text
    assert "authSource" not in text  # a URL's query is its own business
    assert f"OPENAI_API_KEY: {MARK}" in shown[2]
    # where the agent connects stays readable: a connection failure is about it
    assert f"(mongodb://goose:{MARK}@db.example:27017/{MARK})" in shown[1]
    assert shown[0] == READY[0] and shown[3] == READY[3]  # the model is no secret
    assert shown[2].startswith("2026-01-01T12:00:00.000003Z  INFO")


def test_which_values_are_looked_for() -> None:
    values = secret_values(ENV)
    assert ENV["MONGODB_URL"] in values and ENV["OPENAI_API_KEY"] in values
    assert "v1/chat/completions" in values  # not known to be harmless: masked
    for plain in ("openai", "gpt-4o-mini", "auto", "abc", "3001"):
        assert plain not in values
    assert values == tuple(sorted(values, key=len, reverse=True))  # longest first
    # a key whose name sounds secret is never plain, whatever it holds
    assert not harmless("GOOSE_PROVIDER_API_KEY", "x")
    assert not harmless("DB_PASSWORD", "123456")
    assert harmless("GOOSE_TEMPERATURE", "0.7") and harmless("ANY_FLAG", "true")
    # a short value is looked for only under a key named like a secret
    short = secret_values({"DB_PASSWORD": "p4ss", "REGION": "eu-w1", "PIN_TOKEN": "abc"})
    assert short == ("p4ss",)


def test_a_value_inside_another_is_not_left_half_shown() -> None:
    values = ["abcdef-123456", "abcdef-123456-and-more"]
    assert redact_text("x abcdef-123456-and-more y", values) == f"x {MARK} y"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("OPENAI_API_KEY: sk-proj-AbCdEfGhIjKlMnOpQrStUv123456", "sk-proj-AbCdEfGhIjKlMnOpQrSt"),
        ("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "sk-ant-api03-abcdefghijk"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopq"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_11ABCDEFG"),
        ("aws AKIAABCDEFGHIJKLMNOP in use", "AKIAABCDEFGHIJKLMNOP"),
        ("slack xoxb-123456789012-abcdefghij", "xoxb-123456789012"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSyA1234567890abcdefg"),
        ("Authorization: Bearer abc.DEF-123_456~xyz", "abc.DEF-123_456~xyz"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ('{"api_key": "hunter2hunter2", "n": 1}', "hunter2hunter2"),
        ("password: hunter2", "hunter2"),
        ("db_password=p4ss;next=1", "p4ss"),
        ("client_secret = 'cl13nt-s3cr3t'", "cl13nt-s3cr3t"),
        ("x-api-key:abc123xyz", "abc123xyz"),
        ("mongodb://admin:p4ss@db:27017/x", "p4ss"),
        ("mongodb+srv://admin:p%40ss@cluster0.example.net/db", "p%40ss"),
        ("an @ in it: mongodb://u:p@ss@host/db", "p@ss"),
        ("https://ghp_tokentokentoken@github.com/o/r.git", "ghp_tokentokentoken"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_Xg", "eyJ"),
        ("hex 3f9a0c1b2d4e5f60718293a4b5c6d7e8f9012345 end", "3f9a0c1b2d4e5f60718293a4b5c6d7e8"),
        ("b64 Xy7Qp2Lm9Rt4Vb8Nc3Kd6Fh1Js5Gw0Ae2Zu4 end", "Xy7Qp2Lm9Rt4Vb8Nc3Kd6Fh1Js5Gw0Ae2"),
    ],
)
def test_key_shapes_are_masked_whoever_wrote_them(text: str, secret: str) -> None:
    shown = redact_text(text, [])
    assert secret not in shown and MARK in shown, shown


@pytest.mark.parametrize(
    "text",
    [
        "proj-abcdefgh-api-7d9bcf5f8-x2k4q Scheduled to sim-node-1",
        "session 550e8400-e29b-41d4-a716-446655440000",
        'Successfully pulled image "goose-api@sha256:'
        '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"',
        "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/home/goose/.config/goose/extensions/developer/something/else/x",
        "Basic authentication is off; Bearer Tokens are required",
        "max_tokens=4096 input_tokens: 12 authSource=admin",
        "BLACKBOX_API_KEY: unset; OPENAI_API_KEY: Err(NotPresent); password: ***",
        "Back-off restarting failed container goose-api in pod proj-x-api-b6d_user-alice(uid)",
        "a_very_long_snake_case_identifier_of_some_function_name",
        "mongodb://127.0.0.1:27017/?directConnection=true",
    ],
)
def test_ordinary_text_stays_as_it_is(text: str) -> None:
    assert redact_text(text, []) == text


def test_failure_messages_keep_their_own_mark() -> None:
    """`agentenv.redact` (failure messages) delegates here, with `***`."""
    text = f"Error: cannot connect to {ENV['MONGODB_URL']} with key {ENV['OPENAI_API_KEY']}"
    shown = redact(text, ENV)
    assert "s3cr3t-pw" not in shown and ENV["OPENAI_API_KEY"] not in shown
    assert "mongodb://goose:***@db.example:27017/***" in shown and MARK not in shown
    assert mask_url("https://u:pw@h/x and https://tok@h/") == "https://u:***@h/x and https://***@h/"


_ALPHABET = string.ascii_letters + string.digits
SECRETS = st.text(alphabet=_ALPHABET + "-_.+/=!$%", min_size=6, max_size=40).filter(
    lambda s: s.strip() == s and not s.isdigit()
)
FILLER = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2022"),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(secret=SECRETS, before=FILLER, after=FILLER, key=st.sampled_from(sorted(ENV)))
def test_an_environment_value_never_survives(
    secret: str, before: str, after: str, key: str
) -> None:
    env = {**ENV, key: secret}
    values = secret_values(env)
    shown = redact_text(before + secret + after, values)
    if secret in values:
        assert secret not in shown
    # redacting is stable: what is shown is shown again as it is
    assert redact_text(shown, values) == shown


@settings(max_examples=300, deadline=None)
@given(
    user=st.text(alphabet=_ALPHABET, min_size=1, max_size=12),
    password=st.text(alphabet=_ALPHABET + "!$&'()*+,;=%-._~@", min_size=1, max_size=24),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    scheme=st.sampled_from(["mongodb", "mongodb+srv", "postgres", "redis", "https", "amqp"]),
    rest=st.sampled_from(["", "/", "/db", "/db?authSource=admin", ":27017/x"]),
)
def test_a_urls_password_never_survives(
    user: str, password: str, host: str, scheme: str, rest: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{rest}"
    shown = redact_text(f"connecting to {url} now", [])
    assert f":{password}@" not in shown
    assert f"{scheme}://{user}:{MARK}@{host}" in shown


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_random_tokens_are_masked(seed: int) -> None:
    rng = random.Random(seed)
    token = "aZ7" + "".join(rng.choice(_ALPHABET) for _ in range(37))
    hexed = "a1" + "".join(rng.choice("0123456789abcdef") for _ in range(38))
    shown = redact_text(f"token is {token}; trace {hexed}", [])
    assert token not in shown and hexed not in shown
