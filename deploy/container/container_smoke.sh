#!/bin/sh
# `just container-smoke`: build the image on a local Debian bookworm base and run the
# hardened checks (deploy/container/smoke_image.py) with podman. .ci/run calls it.
#
# 1. podman, runc and debootstrap are installed when missing (.ci/ensure-tools: root with
#    apt-get), else it fails saying how to get them.
# 2. The base, localhost/reco-base:bookworm, is Debian's minbase with python3, python3-venv
#    and ca-certificates, made by debootstrap from Debian's own archive and imported into
#    podman (no registry is needed; a plain minbase has no Python). It is made once and
#    reused while podman keeps it (REBUILD_BASE=1 makes it again).
# 3. The image is built from the Containerfile with --build-arg BASE_IMAGE=<that base>.
# 4. smoke_image.py runs it read-only, without capabilities, against the embedded stack.
# Each step prints how long it took, and each is bounded (timeout): about 10 minutes in all
# on a fresh machine here (debootstrap ~5, the image ~4), under a minute once the base and
# the build stage's layers are cached.
set -eu
cd "$(dirname "$0")/../.."
BASE=${BASE:-localhost/reco-base:bookworm}
IMAGE=${IMAGE:-localhost/reco:smoke}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PODMAN="podman --runtime=runc"   # crun is not installed; runc is (Debian's podman suggests it)
step() { echo "container-smoke: $1 ($(($(date +%s) - began)) s)"; began=$(date +%s); }
began=$(date +%s)

.ci/ensure-tools --require podman=podman runc=runc debootstrap=debootstrap \
    promtool=prometheus
step "tools ready"

if [ -n "${REBUILD_BASE:-}" ] || ! $PODMAN image exists "$BASE"; then
    rootfs=$(mktemp -d /var/tmp/reco-base-XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    timeout 1200 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
        tail -20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*
    tar -C "$rootfs" -c . | $PODMAN import --quiet - "$BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    step "base $BASE made with debootstrap"
else
    step "base $BASE reused"
fi

# pip in the build stage trusts this machine's CA bundle (a TLS-intercepting proxy's CA may
# be in it), through a pip.conf mounted for the build only: neither lands in the image.
build_dir=$(mktemp -d /var/tmp/reco-build-XXXXXX)
trap 'rm -rf "$build_dir"' EXIT
printf '[global]\ncert = /run/reco-build/ca.crt\n' >"$build_dir/pip.conf"
cp "${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$build_dir/ca.crt"
timeout 1800 $PODMAN build --quiet --format docker --build-arg BASE_IMAGE="$BASE" \
    --volume "$build_dir:/run/reco-build:ro" --volume "$build_dir/pip.conf:/etc/pip.conf:ro" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" -f Containerfile . >/dev/null
rm -rf "$build_dir"
trap - EXIT
step "image $IMAGE built ($($PODMAN image inspect "$IMAGE" --format '{{.Size}}') bytes)"

# The ulimits: podman 4.3 raises the container's nproc limit past what an unprivileged
# sandbox may set (runc: "error setting rlimit type 6"); reco needs far less.
timeout 600 .venv/bin/python deploy/container/smoke_image.py --image "$IMAGE" --engine podman \
    --engine-arg=--runtime=runc --run-arg=--ulimit=nofile=4096:4096 \
    --run-arg=--ulimit=nproc=4096:4096
step "smoke checks passed"
