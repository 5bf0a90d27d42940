"""A small generated OpenAPI v3 (`/openapi/v3` and one document per group version).

kubectl's `apply` (client- and server-side) downloads OpenAPI before it does anything
and only sends `fieldValidation=Strict` (leaving validation to the server) when the
object's paths declare that query parameter for their patch/put/post operations with
the kind's `x-kubernetes-group-version-kind`. Nothing more is needed, so schemas are
kept open (`x-kubernetes-preserve-unknown-fields`).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from .resources import GROUP_VERSIONS, Resource, in_group_version

_META_REF = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def gv_path(group: str, version: str) -> str:
    """`api/v1` or `apis/<group>/<version>` (the key in the OpenAPI v3 index)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(group: str, version: str, kind: str) -> str:
    if group == "":
        package = "io.k8s.api.core"
    elif group == "gateway.networking.k8s.io":
        package = "io.k8s.networking.gateway"
    else:
        package = "io.k8s.api." + group.split(".")[0]
    return f"{package}.{version}.{kind}"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _param(name: str, where: str = "query", required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": {"type": "string", "uniqueItems": True},
    }


_WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]


def _op(action: str, ref: str, gvk: dict[str, str], params: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"$ref": ref}
    op: dict[str, Any] = {
        "operationId": f"{action}{gvk['kind']}",
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": body}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if action in ("post", "put", "patch"):
        types = (
            [
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ]
            if action == "patch"
            else ["application/json"]
        )
        op["requestBody"] = {"content": {t: {"schema": body} for t in types}, "required": True}
    return op


def _object_paths(res: Resource, ref: str, sub: str = "") -> dict[str, Any]:
    gvk = _gvk(res.group, res.version, res.kind)
    if sub == "scale":
        gvk = _gvk("autoscaling", "v1", "Scale")
        ref = "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
    ops = {
        "get": _op("get", ref, gvk, []),
        "put": _op("put", ref, gvk, _WRITE_PARAMS),
        "patch": _op("patch", ref, gvk, [*_WRITE_PARAMS, _param("force")]),
    }
    if not sub:
        ops["delete"] = _op("delete", ref, gvk, [_param("dryRun"), _param("gracePeriodSeconds")])
    return ops


def _base(res: Resource) -> str:
    prefix = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    return (
        f"{prefix}/namespaces/{{namespace}}/{res.plural}"
        if res.namespaced
        else f"{prefix}/{res.plural}"
    )


_BYTES_MAP = {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
# Kinds whose content is not under spec/status (kubectl reads their fields from here).
_TOP_LEVEL: dict[str, dict[str, Any]] = {
    "secrets": {
        "data": _BYTES_MAP,
        "stringData": _STRING_MAP,
        "type": {"type": "string"},
        "immutable": {"type": "boolean"},
    },
    "configmaps": {
        "data": _STRING_MAP,
        "binaryData": _BYTES_MAP,
        "immutable": {"type": "boolean"},
    },
}


def _kind_schema(res: Resource) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"allOf": [{"$ref": _META_REF}], "default": {}},
    }
    if res.plural in _TOP_LEVEL:
        properties.update(_TOP_LEVEL[res.plural])
    else:
        properties["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        properties["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "type": "object",
        "description": f"{res.kind} (simulated cluster schema: fields are not enumerated).",
        "properties": properties,
    }


def _meta_schema() -> dict[str, Any]:
    string_map = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}},
            "ownerReferences": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "managedFields": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    }


@cache
def document(group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group version (None if not served)."""
    if (group, version) not in GROUP_VERSIONS:
        return None
    schemas: dict[str, Any] = {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": _meta_schema()}
    paths: dict[str, Any] = {}
    for res in in_group_version(group, version):
        name = _schema_name(res.group, res.version, res.kind)
        schemas[name] = _kind_schema(res)
        ref = f"#/components/schemas/{name}"
        gvk = _gvk(res.group, res.version, res.kind)
        collection_params = [_param("labelSelector"), _param("fieldSelector"), _param("watch")]
        paths[_base(res)] = {
            "get": _op("list", ref, gvk, collection_params),
            "post": _op("post", ref, gvk, _WRITE_PARAMS),
        }
        paths[_base(res) + "/{name}"] = _object_paths(res, ref)
        for sub in ("status", "scale"):
            if sub in res.subresources:
                paths[_base(res) + "/{name}/" + sub] = _object_paths(res, ref, sub)
        if "scale" in res.subresources:
            schemas["io.k8s.api.autoscaling.v1.Scale"] = {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            }
    if group == "autoscaling":
        schemas["io.k8s.api.autoscaling.v1.Scale"] = {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": _META_REF}], "default": {}},
                "spec": {
                    "type": "object",
                    "properties": {"replicas": {"type": "integer", "format": "int32"}},
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-group-version-kind": [_gvk("autoscaling", "v1", "Scale")],
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@cache
def document_hash(group: str, version: str) -> str:
    return (
        hashlib.sha512(json.dumps(document(group, version), sort_keys=True).encode())
        .hexdigest()[:32]
        .upper()
    )


def index() -> dict[str, Any]:
    """`/openapi/v3`: where each group version's document is."""
    return {
        "paths": {
            gv_path(g, v): {
                "serverRelativeURL": f"/openapi/v3/{gv_path(g, v)}?hash={document_hash(g, v)}"
            }
            for g, v in GROUP_VERSIONS
        }
    }
