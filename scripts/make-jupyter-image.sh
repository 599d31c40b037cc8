#!/usr/bin/env bash
# Makes the local Docker image for the Jupyter notebook tests without any registry.
#
#   dcloud-test/jupyter:latest   a minimal Debian bookworm root filesystem with Debian's
#                                jupyter-notebook (the classic notebook 6.x, with python3-notebook
#                                and an ipykernel Python 3 kernel)
#
# No image can be pulled here, so the root filesystem is bootstrapped from Debian's package
# mirror with mmdebstrap (installed with apt-get when missing) and handed to `docker import`.
# Tests that start a notebook environment run it from this image, e.g.
#
#   docker run -d -p 127.0.0.1:PORT:8888 dcloud-test/jupyter:latest \
#       jupyter-notebook --ip=0.0.0.0 --port=8888 --no-browser --allow-root --NotebookApp.token=TOKEN
#
# Idempotent: an image that already exists is left alone (pass --force to rebuild it).
# Needs root (uses sudo otherwise) and network access to the Debian mirror.
set -euo pipefail

IMAGE="dcloud-test/jupyter:latest"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE=0
case "${1:-}" in
    "") ;;
    --force) FORCE=1 ;;
    *)
        echo "usage: $0 [--force]" >&2
        exit 2
        ;;
esac

if ! command -v docker >/dev/null 2>&1; then
    echo "make-jupyter-image: docker CLI not found" >&2
    exit 1
fi

if [[ $FORCE -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "make-jupyter-image: $IMAGE already present"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "make-jupyter-image: installing mmdebstrap (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "make-jupyter-image: mmdebstrap is missing after installing it" >&2
    exit 1
fi

WORK=$(mktemp -d)
chmod 755 "$WORK" # apt's _apt user downloads into the root filesystem below it
# The root filesystem is owned by root (made with sudo when not root), so remove it the same way.
trap '$SUDO rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

echo "make-jupyter-image: bootstrapping $SUITE + jupyter-notebook from $MIRROR (takes a few minutes)"
# minbase + jupyter-notebook (python3-notebook alone is only the library: /usr/bin/jupyter-notebook
# and the `jupyter` command come from the jupyter-notebook and jupyter-core packages), no
# recommends; dpkg skips docs, man pages and translations
# (the path-exclude settings stay in the image, as in Debian's own Docker images).
if ! $SUDO mmdebstrap \
    --mode=root \
    --variant=minbase \
    --include=jupyter-notebook \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    "$SUITE" "$ROOTFS" "$MIRROR"; then
    echo "make-jupyter-image: mmdebstrap failed (is $MIRROR reachable?)" >&2
    exit 1
fi

if [[ ! -x $ROOTFS/usr/bin/jupyter-notebook ]]; then
    echo "make-jupyter-image: /usr/bin/jupyter-notebook missing from the bootstrapped root filesystem" >&2
    exit 1
fi

# Shrink: apt lists and caches, logs. (Keep the .pyc files: python would rebuild them on start.)
$SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/* "$ROOTFS"/tmp/*

$SUDO tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /root' \
    - "$IMAGE" >/dev/null
echo "make-jupyter-image: built $IMAGE"
