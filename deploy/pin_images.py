"""Pin every image the deploy files name to its digest, or check that they are pinned.

    python deploy/pin_images.py --check     # list what is not pinned; exit 1 if anything
    python deploy/pin_images.py             # resolve tag -> digest and rewrite the files

Images: each ``image:`` of compose.yaml (but the services built here, ``build:``), the
``images:`` entries of deploy/kubernetes/kustomization.yaml (reco's own release image:
its ``digest:``) and the Containerfile's default ``BASE_IMAGE``. A pinned reference keeps
its tag for people and adds the digest for machines: ``name:tag@sha256:<64 hex>``.

Resolving asks the registry with ``skopeo inspect --raw`` (Debian package ``skopeo``) and
takes the sha256 of the manifest bytes as they are served: for a multi-platform image that
is the index, so one pin serves every platform. It needs the registries; run it where they
are reachable (this workplace reaches none: the repository keeps tags until someone runs
it, and `--check` says so). To bump: change the tag, run this, review the diff, commit.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
KUSTOMIZATION = ROOT / "deploy" / "kubernetes" / "kustomization.yaml"
CONTAINERFILE = ROOT / "Containerfile"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMPOSE_IMAGE = re.compile(r"^(?P<lead>\s+image:\s*)(?P<ref>\S+)\s*$", re.MULTILINE)
_BASE_IMAGE = re.compile(r"^(?P<lead>ARG BASE_IMAGE=)(?P<ref>\S+)\s*$", re.MULTILINE)
Resolve = Callable[[str], str]


def is_pinned(reference: str) -> bool:
    _, at, digest = reference.partition("@")
    return bool(at) and DIGEST.fullmatch(digest) is not None


def compose_references(text: str) -> list[str]:
    """``image:`` values of services without ``build:`` (those are built, not pulled)."""
    refs = []
    for block in re.split(r"\n(?=  [A-Za-z0-9_-]+:\n)", text):
        if re.search(r"^    build:", block, re.MULTILINE):
            continue
        refs += [m["ref"] for m in _COMPOSE_IMAGE.finditer(block) if "${" not in m["ref"]]
    return refs


def pin_text(text: str, pattern: re.Pattern[str], wanted: set[str], resolve: Resolve) -> str:
    def replace(match: re.Match[str]) -> str:
        ref = match["ref"]
        if ref not in wanted or is_pinned(ref):
            return match.group(0)
        return f"{match['lead']}{ref.partition('@')[0]}@{resolve(ref)}"

    return pattern.sub(replace, text)


def kustomization_images(text: str) -> list[tuple[str, str, str | None]]:
    """(name, newTag, digest) of each ``images:`` entry (the file's own simple layout)."""
    entries = re.findall(
        r"^  - name: (\S+)\n(?:    newName: \S+\n)?    newTag: \"?([^\"\n]+)\"?\n"
        r"(?:    digest: (\S+)\n)?",
        text + "\n",
        re.MULTILINE,
    )
    return [(name, tag, digest or None) for name, tag, digest in entries]


def pin_kustomization(text: str, resolve: Resolve) -> str:
    for name, tag, digest in kustomization_images(text):
        if digest and DIGEST.fullmatch(digest):
            continue
        line = f'    newTag: "{tag}"\n' if f'newTag: "{tag}"' in text else f"    newTag: {tag}\n"
        text = text.replace(line, f"{line}    digest: {resolve(f'{name}:{tag}')}\n", 1)
    return text


def unpinned() -> list[str]:
    refs = [r for r in compose_references(COMPOSE.read_text()) if not is_pinned(r)]
    refs += [
        f"{name}:{tag}"
        for name, tag, digest in kustomization_images(KUSTOMIZATION.read_text())
        if not (digest and DIGEST.fullmatch(digest))
    ]
    refs += [m["ref"] for m in _BASE_IMAGE.finditer(CONTAINERFILE.read_text())]
    return [r for r in refs if not is_pinned(r)]


def skopeo_digest(reference: str) -> str:
    """The digest of the manifest (or index) the registry serves for ``reference``."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise SystemExit("pin_images: skopeo is needed (apt-get install skopeo)")
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", f"docker://{reference}"],
        capture_output=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def pin_all(resolve: Resolve) -> None:
    compose = COMPOSE.read_text()
    wanted = set(compose_references(compose))
    COMPOSE.write_text(pin_text(compose, _COMPOSE_IMAGE, wanted, resolve))
    KUSTOMIZATION.write_text(pin_kustomization(KUSTOMIZATION.read_text(), resolve))
    containerfile = CONTAINERFILE.read_text()
    bases = {m["ref"] for m in _BASE_IMAGE.finditer(containerfile)}
    CONTAINERFILE.write_text(pin_text(containerfile, _BASE_IMAGE, bases, resolve))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list unpinned images, exit 1")
    args = parser.parse_args(argv)
    if args.check:
        missing = unpinned()
        for reference in missing:
            print(f"not pinned by digest: {reference}")
        return 1 if missing else 0
    pin_all(skopeo_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
