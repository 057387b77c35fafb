"""Assemble the runtime image's whole filesystem in a directory (run in the build stage).

    /opt/reco/bin/python make_rootfs.py /rootfs

The runtime stage is ``FROM scratch`` plus this directory: the interpreter, its standard
library (without ensurepip, venv, idlelib, tkinter, lib2to3, test and site-packages), the
virtualenv in /opt/reco, the shared libraries those ELF files load (found with ldd, with
the loader and its cache), the CA bundle, and /etc/passwd and /etc/group naming UID/GID
10001. So no shell, no coreutils, no package manager (apt, dpkg), no perl, no pip wheel:
nothing in it can install or run anything but Python. Standard library only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

VENV = Path("/opt/reco")
STDLIB_EXCLUDED = {
    "ensurepip", "venv", "idlelib", "tkinter", "turtledemo", "lib2to3", "test",
    "site-packages", "dist-packages", "__pycache__/turtle",
}  # fmt: skip
VENV_EXCLUDED = re.compile(r"^(activate.*|Activate\.ps1|pip.*|easy_install.*|wheel)$")
# Loaded with dlopen, so ldd cannot see them: unwinding (thread exit) and name service.
DLOPENED = ("libgcc_s.so.1", "libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2")
FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/ld.so.cache")
PASSWD = "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nreco:x:10001:10001::/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nreco:x:10001:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def interpreter_chain() -> list[Path]:
    """The virtualenv's ``python`` link, every link it goes through, and the interpreter
    (/opt/reco/bin/python -> /usr/bin/python3 -> python3.11)."""
    chain = [VENV / "bin" / "python"]
    while chain[-1].is_symlink():
        chain.append(chain[-1].parent / os.readlink(chain[-1]))
    return chain


def stdlib_dirs() -> set[Path]:
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    return {Path(paths["stdlib"]), Path(paths["platstdlib"])}


def walk(root: Path, excluded: set[str]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        if relative and relative[0] in excluded:
            continue
        if path.is_file() or path.is_symlink():
            yield path


def venv_files() -> Iterator[Path]:
    for path in walk(VENV, set()):
        if path.parent == VENV / "bin" and VENV_EXCLUDED.match(path.name):
            continue
        yield path


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_libraries(elf_files: Iterable[Path]) -> set[Path]:
    """Every library (and the loader) the files need, as ldd names them."""
    needed: set[Path] = set()
    for path in elf_files:
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        needed.update(Path(m) for m in _LDD_PATH.findall(done.stdout))
    return needed


def dlopened_libraries(seen: set[Path]) -> set[Path]:
    directories = {path.parent for path in seen}
    return {d / name for d in directories for name in DLOPENED if (d / name).exists()}


def copy(path: Path, rootfs: Path, links: set[Path]) -> None:
    """Copy ``path`` to the same path under ``rootfs``: the links of ``links`` stay links
    (each hop is copied too), any other symlink is copied as its content."""
    target = rootfs / path.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        return
    if path in links:
        target.symlink_to(os.readlink(path))
    else:
        shutil.copy2(path, target)


def write_etc(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "nsswitch.conf").write_text(NSSWITCH)
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def main(rootfs: Path) -> int:
    chain = interpreter_chain()
    links = {p for p in chain if p.is_symlink()} | {p for p in venv_files() if p.is_symlink()}
    files = [*chain, *venv_files()]
    for directory in stdlib_dirs():
        files.extend(walk(directory, STDLIB_EXCLUDED))
    libraries = shared_libraries(f for f in files if not f.is_symlink() and is_elf(f))
    libraries |= dlopened_libraries(libraries)
    extra = [Path(f) for f in FILES if Path(f).exists()]
    for path in [*files, *sorted(libraries), *extra]:
        copy(path, rootfs, links)
    write_etc(rootfs)
    print(f"rootfs: {len(files)} files, {len(libraries)} shared libraries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
