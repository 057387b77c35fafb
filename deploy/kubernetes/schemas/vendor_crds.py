"""Vendor the openAPIV3Schema of CustomResourceDefinitions, for validating our manifests.

    python deploy/kubernetes/schemas/vendor_crds.py CRD.yaml [CRD.yaml ...]

Writes ``<group>/<kind>_<version>.json`` beside this script for every served version of each
CRD: the schema exactly as the CRD declares it (kubeconform's file layout, so kubeconform
can use the directory too). The CRDs come from a release tag of their project: README.md
beside this script names it and the bump procedure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def vendor(crd_path: Path) -> list[Path]:
    written = []
    for crd in yaml.safe_load_all(crd_path.read_text()):
        if crd is None or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            kind = spec["names"]["kind"].lower()
            path = HERE / spec["group"] / f"{kind}_{version['name']}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(schema, indent=1, ensure_ascii=False) + "\n")
            written.append(path)
    return written


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        for path in vendor(Path(arg)):
            print(path.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
