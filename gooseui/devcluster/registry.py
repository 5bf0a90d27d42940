"""The API verbs over the store: what the API server does between HTTP and etcd.

create, get, list, update, patch (apply, merge, strategic, JSON), delete, and the
`scale`/`status` subresources, with metadata handling (uid, generation,
creationTimestamp, managedFields), defaulting, validation, optimistic concurrency,
admission (namespace lifecycle, ResourceQuota pod counts) and graceful deletion.
Both the HTTP layer and the simulated controllers write through here, so a
controller's write looks exactly like any other client's to a watcher.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from . import admission, defaults, merge
from . import apply as ssa
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    not_found,
)
from .resources import LIMITRANGES, NAMESPACES, PODS, QUOTAS, SERVICES, Resource
from .selectors import labels_match, parse_field_selector, parse_label_selector, selector_to_string
from .store import Obj, Store
from .util import clone, new_uid, now_iso, random_suffix

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE, STRATEGIC, APPLY)
_BUILTIN_GROUPS = ("", "apps", "networking.k8s.io", "autoscaling")
_RETURNS_DELETED_OBJECT = {"pods", "services", "namespaces"}
# Kinds whose strategies maintain metadata.generation.
_GENERATION_TRACKED = {
    "deployments",
    "replicasets",
    "ingresses",
    "networkpolicies",
    "httproutes",
    "gateways",
    "gatewayclasses",
    "horizontalpodautoscalers",
}


@dataclass
class DeleteOptions:
    """The parts of `DeleteOptions` the simulator honours."""

    grace_period: int | None = None
    propagation: str | None = None  # Orphan | Background | Foreground
    precondition_uid: str | None = None
    precondition_rv: str | None = None


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"} for entry in meta.get("managedFields") or []
    ]
    return {**obj, "metadata": meta}


def parse_body(raw: bytes | str, yaml_ok: bool = False) -> Any:
    """Decode a JSON (or, for apply, YAML) request body; 400 when it is not."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        if yaml_ok:
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise bad_request(f"error decoding YAML: {exc}") from exc
        raise bad_request(
            "the object provided is unrecognized or could not be decoded as JSON"
        ) from None


class Registry:
    """Kubernetes REST semantics for every resource in `resources.RESOURCES`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next_ip = 10

    # ---------------------------------------------------------------- reads

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self.store.get(res.key, namespace if res.namespaced else "", name)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        return obj

    def find(self, res: Resource, namespace: str, name: str) -> Obj | None:
        return self.store.get(res.key, namespace if res.namespaced else "", name)

    def list(
        self,
        res: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching objects and the list's resourceVersion."""
        requirements = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items = [
            obj
            for obj in self.store.list(res.key, namespace if res.namespaced else None)
            if labels_match(requirements, obj.get("metadata", {}).get("labels")) and fields(obj)
        ]
        return items, self.store.resource_version

    def predicate(
        self, label_selector: str | None, field_selector: str | None
    ) -> Callable[[Obj], bool]:
        """A watch filter for the given selectors (parsed once, errors raised now)."""
        requirements = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        return lambda obj: (
            labels_match(requirements, obj.get("metadata", {}).get("labels")) and fields(obj)
        )

    # ---------------------------------------------------------------- admission

    def _admit_create(self, res: Resource, namespace: str, obj: Obj) -> None:
        if not res.namespaced:
            return
        ns = self.store.get(NAMESPACES.key, "", namespace)
        name = obj["metadata"]["name"]
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns.get("metadata", {}).get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{res.plural if not res.group else res.plural + "." + res.group} "{name}" is '
                f"forbidden: unable to create new content in namespace {namespace} because it "
                "is being terminated",
                "Forbidden",
                {
                    "name": name,
                    "kind": res.plural,
                    **({"group": res.group} if res.group else {}),
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )
        if res is PODS:
            admission.check_pod_security(obj, ns)
            admission.apply_limit_ranges(obj, self.store.list(LIMITRANGES.key, namespace))
            quotas = self.store.list(QUOTAS.key, namespace)
            if quotas:
                admission.check_quotas(obj, quotas, self.active_pods(namespace))

    def active_pods(self, namespace: str) -> list[Obj]:
        """Pods a ResourceQuota counts: not terminal and not being deleted."""
        return [
            pod
            for pod in self.store.list(PODS.key, namespace)
            if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp")
        ]

    def count_pods(self, namespace: str) -> int:
        return len(self.active_pods(namespace))

    def _allocate_cluster_ip(self) -> str:
        self._next_ip += 1
        n = self._next_ip
        return f"10.96.{(n // 250) % 250}.{n % 250 + 1}"

    # ---------------------------------------------------------------- writes

    def _prepare(
        self, res: Resource, old: Obj | None, new: Obj, namespace: str, subresource: str
    ) -> None:
        """Carry server-owned metadata, default, validate and bump generation (in place)."""
        meta = new.setdefault("metadata", {})
        new["apiVersion"] = res.api_version
        new["kind"] = res.kind
        if res.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if old is None:
            meta["uid"] = new_uid()
            meta["creationTimestamp"] = now_iso()
            for key in (
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "selfLink",
            ):
                meta.pop(key, None)
            if res.has_status:
                new["status"] = {}
        else:
            old_meta = old["metadata"]
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
            ):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if res.has_status and subresource != "status":
                if "status" in old:
                    new["status"] = clone(old["status"])
                else:
                    new.pop("status", None)
            if res is SERVICES:
                spec = new.setdefault("spec", {})
                old_spec = old.get("spec") or {}
                for key in ("clusterIP", "clusterIPs"):
                    if not spec.get(key) and old_spec.get(key):
                        spec[key] = clone(old_spec[key])
        defaults.default_object(res, new)
        if res is SERVICES:
            spec = new["spec"]
            if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = self._allocate_cluster_ip()
            if spec.get("clusterIP") and not spec.get("clusterIPs"):
                spec["clusterIPs"] = [spec["clusterIP"]]
        if res is QUOTAS:
            hard = (new.get("spec") or {}).get("hard") or {}
            status = new.setdefault("status", {})
            status["hard"] = clone(hard)
            status.setdefault("used", {k: "0" for k in hard})
        defaults.validate(res, new, old)
        if res.plural not in _GENERATION_TRACKED:
            meta.pop("generation", None)
        elif old is None:
            meta["generation"] = 1
        elif _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1

    def _commit(self, res: Resource, old: Obj | None, new: Obj, dry_run: bool) -> Obj:
        if old is not None and _comparable(old) == _comparable(new):
            return old
        if dry_run:
            if old is not None:
                new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
            return new
        meta = new["metadata"]
        if (
            old is not None
            and meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and res not in (PODS, NAMESPACES)
        ):
            return self.store.remove(res.key, meta.get("namespace", ""), meta["name"]) or new
        return self.store.put(res.key, new)

    def create(
        self,
        res: Resource,
        namespace: str,
        body: Obj,
        manager: str,
        dry_run: bool = False,
    ) -> Obj:
        """POST: 409 AlreadyExists, 404/403 for a missing/terminating namespace, 422."""
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized")
        defaults.check_name_matches(body, None, namespace if res.namespaced else None)
        new = clone(body)
        meta = new.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        ns = namespace if res.namespaced else ""
        if meta.get("name") and self.store.get(res.key, ns, meta["name"]) is not None:
            raise already_exists(res.plural, res.group, meta["name"])
        self._prepare(res, None, new, ns, "")
        self._admit_create(res, ns, new)
        ssa.record_update(None, new, manager, res.api_version, now_iso())
        return self._commit(res, None, new, dry_run)

    def _check_rv(self, res: Resource, old: Obj, body: Obj) -> None:
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != old["metadata"].get("resourceVersion"):
            raise conflict(
                res.plural,
                res.group,
                old["metadata"]["name"],
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )

    def replace(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Obj,
        manager: str,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """PUT, with resourceVersion optimistic concurrency (409 Conflict)."""
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized")
        defaults.check_name_matches(body, name, namespace if res.namespaced else None)
        old = self.get(res, namespace, name)
        if subresource == "scale":
            return self._write_scale(res, old, body, manager, dry_run)
        self._check_rv(res, old, body)
        if subresource == "status":
            new = clone(old)
            new["status"] = clone(body.get("status") or {})
        else:
            new = clone(body)
            new.setdefault("metadata", {})["name"] = name
        explicit = self._take_managed_fields(old, new)
        self._prepare(res, old, new, old["metadata"].get("namespace", ""), subresource)
        if subresource != "status" and not explicit:
            ssa.record_update(old, new, manager, res.api_version, now_iso())
        return self._commit(res, old, new, dry_run)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        manager: str | None,
        force: bool = False,
        subresource: str = "",
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """PATCH in any of the four patch formats; returns (object, created)."""
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in PATCH_TYPES or (
            content_type == STRATEGIC and res.group not in _BUILTIN_GROUPS
        ):
            accepted = ", ".join(
                t for t in PATCH_TYPES if t != STRATEGIC or res.group in _BUILTIN_GROUPS
            )
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                f"include: {accepted}",
                "UnsupportedMediaType",
            )
        ns = namespace if res.namespaced else ""
        if content_type == APPLY:
            if not manager:
                raise bad_request(
                    "PATCH " + res.plural + ": fieldManager is required for apply requests"
                )
            body = parse_body(raw, yaml_ok=True)
            if not isinstance(body, dict):
                raise bad_request("the object provided is unrecognized")
            return self._apply(res, ns, name, body, manager, force, subresource, dry_run)
        manager = manager or "unknown"
        if force:
            raise bad_request("force must not be set for non-apply patch requests")
        old = self.get(res, ns, name)
        patch = parse_body(raw)
        base: Obj = self.scale_of(res, old) if subresource == "scale" else old
        if content_type == MERGE:
            patched = merge.merge_patch(base, patch)
        elif content_type == STRATEGIC:
            patched = merge.strategic_merge(base, patch)
            if patched is None:
                raise bad_request("$patch: delete is not allowed on the whole object")
        else:
            patched = merge.json_patch(base, patch)
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not an object")
        if subresource == "scale":
            return self._write_scale(res, old, patched, manager, dry_run), False
        self._check_rv(res, old, patched)
        defaults.check_name_matches(patched, name, ns if res.namespaced else None)
        new = clone(patched)
        if subresource == "status":
            new = {**clone(old), "status": new.get("status") or {}}
        explicit = self._take_managed_fields(old, new)
        self._prepare(res, old, new, ns, subresource)
        if subresource != "status" and not explicit:
            ssa.record_update(old, new, manager, res.api_version, now_iso())
        return self._commit(res, old, new, dry_run), False

    @staticmethod
    def _take_managed_fields(old: Obj, new: Obj) -> bool:
        """Decide the managedFields of an update, as the API server does.

        Absent in the request: the stored ones are kept. Sent unchanged: kept, and the
        write is recorded for its manager. Sent changed (kubectl's migration from
        client-side to server-side apply rewrites them): taken as they are. True in the
        last case.
        """
        meta = new.setdefault("metadata", {})
        stored = old["metadata"].get("managedFields") or []
        sent = meta.get("managedFields")
        if sent is None or sent == stored:
            meta["managedFields"] = clone(stored)
            return False
        if not isinstance(sent, list) or not all(isinstance(e, dict) for e in sent):
            raise bad_request("metadata.managedFields must be a list of ManagedFieldsEntry objects")
        if not sent:
            meta.pop("managedFields", None)
        return True

    def _apply(
        self,
        res: Resource,
        ns: str,
        name: str,
        body: Obj,
        manager: str,
        force: bool,
        subresource: str,
        dry_run: bool,
    ) -> tuple[Obj, bool]:
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            defaults.check_name_matches(body, name, None)
        if res.namespaced:
            defaults.check_name_matches(body, None, ns)
        for field, want in (("apiVersion", res.api_version), ("kind", res.kind)):
            if subresource == "" and body.get(field) not in (None, want):
                raise bad_request(
                    f"the API version in the data ({body.get('apiVersion')}) does not match the "
                    f"expected API version ({res.api_version})"
                    if field == "apiVersion"
                    else f"the kind in the data ({body.get('kind')}) does not match the expected "
                    f"kind ({res.kind})"
                )
        old = self.store.get(res.key, ns, name)
        if subresource == "scale":
            if old is None:
                raise not_found(res.plural, res.group, name)
            return self._write_scale(res, old, body, manager, dry_run), False
        if subresource == "status":
            if old is None:
                raise not_found(res.plural, res.group, name)
            new = {
                **clone(old),
                "status": merge.apply_merge(old.get("status") or {}, body.get("status") or {}),
            }
            self._prepare(res, old, new, ns, "status")
            return self._commit(res, old, new, dry_run), False
        body = {**body, "metadata": {**meta, "name": name}}
        now = now_iso()
        try:
            merged = ssa.server_side_apply(
                old, body, manager, force, res.api_version, now, res.kind, res.group, name
            )
        except ApiError as err:
            upgraded = self._upgrade_client_side_apply(res, old, err, manager, now, name)
            merged = ssa.server_side_apply(
                upgraded, body, manager, force, res.api_version, now, res.kind, res.group, name
            )
        if old is None:
            self._prepare(res, None, merged, ns, "")
            self._admit_create(res, ns, merged)
            return self._commit(res, None, merged, dry_run), True
        self._prepare(res, old, merged, ns, "")
        return self._commit(res, old, merged, dry_run), False

    @staticmethod
    def _upgrade_client_side_apply(
        res: Resource, old: Obj | None, err: ApiError, manager: str, now: str, name: str
    ) -> Obj:
        """The API server's lastAppliedManager: the first `kubectl apply --server-side` after
        client-side applies takes over what `kubectl-client-side-apply` owns, by applying
        the last-applied-configuration annotation first (else the defaulted atomic lists
        of the live object would conflict with the applied ones)."""
        causes = (err.details or {}).get("causes") or []
        annotations = ((old or {}).get("metadata") or {}).get("annotations") or {}
        last = annotations.get("kubectl.kubernetes.io/last-applied-configuration")
        if (
            err.code != 409
            or manager != "kubectl"
            or old is None
            or not last
            or not causes
            or any('"kubectl-client-side-apply"' not in c.get("message", "") for c in causes)
        ):
            raise err
        try:
            applied = json.loads(last)
        except ValueError:
            raise err from None
        if not isinstance(applied, dict):
            raise err
        applied["metadata"] = {**(applied.get("metadata") or {}), "name": name}
        return ssa.server_side_apply(
            old, applied, manager, True, res.api_version, now, res.kind, res.group, name
        )

    # ---------------------------------------------------------------- scale

    def scale_of(self, res: Resource, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
        meta = obj["metadata"]
        status = obj.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {
                "replicas": status.get("replicas", 0),
                "selector": selector_to_string((obj.get("spec") or {}).get("selector")),
            },
        }

    def _write_scale(self, res: Resource, old: Obj, scale: Obj, manager: str, dry_run: bool) -> Obj:
        self._check_rv(res, old, scale)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise defaults.invalid_scale(old["metadata"]["name"], replicas)
        new = clone(old)
        new["spec"]["replicas"] = replicas
        self._prepare(res, old, new, old["metadata"].get("namespace", ""), "scale")
        ssa.record_update(old, new, manager, res.api_version, now_iso(), subresource="scale")
        return self.scale_of(res, self._commit(res, old, new, dry_run))

    # ---------------------------------------------------------------- delete

    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        options: DeleteOptions | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """DELETE; returns (object, gone). Pods and namespaces terminate gracefully."""
        options = options or DeleteOptions()
        ns = namespace if res.namespaced else ""
        old = self.get(res, ns, name)
        meta = old["metadata"]
        if options.precondition_uid and options.precondition_uid != meta.get("uid"):
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if options.precondition_rv and options.precondition_rv != meta.get("resourceVersion"):
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {options.precondition_rv}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
            )
        if dry_run:
            return old, False
        if res is NAMESPACES:
            if meta.get("deletionTimestamp"):
                return old, False
            new = clone(old)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new.setdefault("status", {})["phase"] = "Terminating"
            return self.store.put(res.key, new), False
        if res is PODS:
            return self._delete_pod(old, options)
        if meta.get("deletionTimestamp"):
            return old, False
        finalizers = list(meta.get("finalizers") or [])
        if options.propagation == "Foreground":
            finalizers.append("foregroundDeletion")
        elif options.propagation == "Orphan":
            finalizers.append("orphan")
        if finalizers:
            new = clone(old)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["finalizers"] = list(dict.fromkeys(finalizers))
            return self.store.put(res.key, new), False
        return self.store.remove(res.key, ns, name) or old, True

    def _delete_pod(self, old: Obj, options: DeleteOptions) -> tuple[Obj, bool]:
        meta = old["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        grace = options.grace_period
        if grace is None:
            grace = int((old.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        unscheduled = not (old.get("spec") or {}).get("nodeName")
        terminal = (old.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if grace <= 0 or unscheduled or terminal:
            return self.store.remove(PODS.key, ns, name) or old, True
        if meta.get("deletionTimestamp"):
            return old, False
        new = clone(old)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        return self.store.put(PODS.key, new), False

    def returns_deleted_object(self, res: Resource) -> bool:
        return res.plural in _RETURNS_DELETED_OBJECT

    # ---------------------------------------------------------------- controllers

    def mutate(
        self,
        res: Resource,
        namespace: str,
        name: str,
        change: Callable[[Obj], None],
        manager: str,
        track: bool = True,
    ) -> Obj | None:
        """Internal read-modify-write used by controllers; None when the object is gone.

        `change` edits a deep copy in place; an unchanged object is not written.
        """
        ns = namespace if res.namespaced else ""
        old = self.store.get(res.key, ns, name)
        if old is None:
            return None
        new = clone(old)
        change(new)
        self._prepare(res, old, new, ns, "status")
        if track:
            ssa.record_update(old, new, manager, res.api_version, now_iso())
        return self._commit(res, old, new, False)

    def remove_now(self, res: Resource, namespace: str, name: str) -> Obj | None:
        """Final removal (a kubelet ending a terminated pod, a finalized namespace)."""
        return self.store.remove(res.key, namespace if res.namespaced else "", name)
