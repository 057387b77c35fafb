"""Render deploy/kubernetes the way `kustomize build` does, for the fields the base uses.

No kustomize binary installs from PyPI for Python 3.11 (pykustomize needs 3.14, the
`kustomize` package is an unrelated library) and Debian has none, so the suite renders the
kustomization itself and hands the result to kubernetes-validate. It implements exactly
the transformers kustomization.yaml uses, and refuses any other field, so that a new one
cannot be silently ignored: ``resources`` (files, in order), ``namespace`` (on namespaced
objects), ``labels`` with ``includeSelectors: false`` (metadata labels only) and
``images`` (``newName``, ``newTag``, ``digest``: ``name:tag@digest`` when both are given).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = frozenset({"apiVersion", "kind", "namespace", "labels", "resources", "images"})
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"})


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"kustomization fields this renderer does not implement: {unknown}")
    docs = [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((directory / name).read_text())
        if doc is not None
    ]
    return [_transform(copy.deepcopy(doc), kustomization) for doc in docs]


def _transform(doc: dict[str, Any], kustomization: dict[str, Any]) -> dict[str, Any]:
    metadata = doc.setdefault("metadata", {})
    if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
        metadata["namespace"] = kustomization["namespace"]
    for entry in kustomization.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise ValueError("labels with includeSelectors/includeTemplates: not implemented")
        metadata.setdefault("labels", {}).update(entry["pairs"])
    for container in containers(doc):
        container["image"] = _image(container["image"], kustomization.get("images", []))
    return doc


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The containers and init containers of a workload's pod template."""
    spec = doc.get("spec", {})
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"].get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def _image(reference: str, images: list[dict[str, Any]]) -> str:
    name = split_image(reference)[0]
    for entry in images:
        if entry["name"] == name:
            tag, digest = entry.get("newTag"), entry.get("digest")
            out = str(entry.get("newName", name))
            out += f":{tag}" if tag else ""
            return out + (f"@{digest}" if digest else "")
    return reference


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` as (name, tag, digest); a registry port is not a tag."""
    rest, _, digest = reference.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return rest, None, digest or None
    return name, tag, digest or None


def dump(docs: list[dict[str, Any]]) -> str:
    text: str = yaml.safe_dump_all(docs, sort_keys=False)
    return text
