"""Event recording (core/v1 Events), aggregated like client-go's recorder.

Operators and the console read why a pod is stuck from Events (Failed, BackOff,
FailedScheduling, FailedCreate); a repeated event bumps `count` and
`lastTimestamp` instead of piling up new objects.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any

from .errors import ApiError
from .registry import Registry
from .resources import EVENTS
from .util import now_iso

log = logging.getLogger(__name__)

NODE_NAME = "sim-node-1"
_SEEN_LIMIT = 10000


class EventRecorder:
    """Writes Events about objects through the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # aggregation keys of recent events -> event name (bounded, oldest dropped first)
        self._seen: OrderedDict[tuple[str, str, str, str, str], str] = OrderedDict()

    def record(
        self,
        obj: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        component: str,
        field_path: str | None = None,
    ) -> None:
        """Record (or aggregate) an event about `obj`; failures are only logged."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        key = (namespace, meta.get("uid", ""), event_type, reason, message)
        now = now_iso()
        try:
            existing = self._seen.get(key)
            if existing and self.registry.find(EVENTS, namespace, existing) is not None:

                def bump(ev: dict[str, Any]) -> None:
                    ev["count"] = int(ev.get("count", 1)) + 1
                    ev["lastTimestamp"] = now

                self.registry.mutate(EVENTS, namespace, existing, bump, component, track=False)
                return
            involved: dict[str, Any] = {
                "kind": obj.get("kind"),
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "apiVersion": obj.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion"),
            }
            if field_path:
                involved["fieldPath"] = field_path
            name = f"{meta.get('name')}.{secrets.token_hex(8)}"
            source: dict[str, str] = {"component": component}
            if component == "kubelet":
                source["host"] = NODE_NAME
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in involved.items() if v is not None},
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": event_type,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": NODE_NAME if component == "kubelet" else "",
            }
            self.registry.create(EVENTS, namespace, event, component)
            self._seen[key] = name
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)
        except ApiError as err:
            log.debug("event %s/%s not recorded: %s", reason, meta.get("name"), err.message)

    def forget_namespace(self, namespace: str) -> None:
        for key in [k for k in self._seen if k[0] == namespace]:
            del self._seen[key]
