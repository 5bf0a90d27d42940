"""Small helpers shared by the simulator: timestamps, uids and name suffixes."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    """RFC 3339 UTC timestamp with second precision, as object metadata carries."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """RFC 3339 timestamp with microseconds (`MicroTime`, e.g. Event.eventTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_ALPHANUMS) for _ in range(length))


def template_hash(template: Any) -> str:
    """A stable `pod-template-hash` for a pod template (ten safe characters)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in digest[:10])


def parse_iso(value: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def clone(value: Any) -> Any:
    """Deep copy of JSON-like data (dicts, lists, scalars); much cheaper than copy.deepcopy."""
    if type(value) is dict:
        return {k: clone(v) for k, v in value.items()}
    if type(value) is list:
        return [clone(v) for v in value]
    return value
