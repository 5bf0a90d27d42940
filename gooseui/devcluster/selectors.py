"""Label and field selectors (the query-string syntax and the `LabelSelector` object).

Clients find a project's pods and Deployments by label, and kubectl finds one object
by `metadata.name` field selector (`kubectl wait`), so both must match as the real
API server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: key, operator and values."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_EQ_RE = re.compile(r"^([^!=\s]+)\s*(==|=|!=)\s*(.*)$")


def _check_key(key: str, text: str) -> None:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in "{text}"')


def _check_value(value: str, text: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(
            f'unable to parse requirement: invalid label value: "{value}" in "{text}"'
        )


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; 400 BadRequest when malformed."""
    if not text:
        return []
    requirements: list[Requirement] = []
    for part in _split_top(text):
        if m := _SET_RE.match(part):
            key, op, raw = m.group(1), m.group(2), m.group(3)
            _check_key(key, text)
            values = tuple(v.strip() for v in raw.split(",") if v.strip())
            for v in values:
                _check_value(v, text)
            requirements.append(Requirement(key, op, values))
        elif m := _EQ_RE.match(part):
            key, op, value = m.group(1), m.group(2), m.group(3).strip()
            _check_key(key, text)
            _check_value(value, text)
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif part.startswith("!"):
            key = part[1:].strip()
            _check_key(key, text)
            requirements.append(Requirement(key, "!"))
        else:
            _check_key(part, text)
            requirements.append(Requirement(part, "exists"))
    return requirements


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in requirements)


def selector_object_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Match a `LabelSelector` object (`matchLabels` + `matchExpressions`).

    An empty selector matches everything, as for a Deployment (a Service's plain map
    selector is handled by `map_selector_matches`).
    """
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            return False
        req = Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ()))
        if not req.matches(labels):
            return False
    return True


def map_selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service selector: an empty or missing one selects no pods."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """Render a `LabelSelector` object in query syntax (for Scale `status.selector`)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key"), expr.get("operator")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path, "" when absent (as field selectors see it)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Parse `metadata.name=x,status.phase!=Running` into a predicate."""
    if not text:
        return lambda _obj: True
    terms: list[tuple[str, bool, str]] = []
    for part in _split_top(text):
        m = _EQ_RE.match(part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        terms.append((m.group(1), m.group(2) != "!=", m.group(3).strip()))

    def predicate(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in terms)

    return predicate
