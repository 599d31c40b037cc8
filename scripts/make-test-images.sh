#!/usr/bin/env bash
# Makes the local Docker test image(s) without any registry.
#
#   dcloud-test/busybox:latest   a static busybox with its applet symlinks (/bin/sh, ...)
#
# The agent's Docker integration tests (cargo test -p dcloud-agent --features docker-tests)
# build their environment images `FROM dcloud-test/busybox:latest`. Idempotent: an image
# that already exists is left alone (pass --force to rebuild it).
set -euo pipefail

IMAGE="dcloud-test/busybox:latest"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

if ! command -v docker >/dev/null 2>&1; then
    echo "make-test-images: docker CLI not found" >&2
    exit 1
fi

if [[ $FORCE -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "make-test-images: $IMAGE already present"
    exit 0
fi

# A static busybox: Debian's busybox-static installs it as /bin/busybox.
# ldd fails on a static binary ("not a dynamic executable").
is_static() { ! ldd "$1" >/dev/null 2>&1; }
BUSYBOX=/bin/busybox
if [[ ! -x $BUSYBOX ]] || ! is_static "$BUSYBOX"; then
    echo "make-test-images: installing busybox-static (apt-get)"
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq busybox-static >/dev/null
fi
if [[ ! -x $BUSYBOX ]] || ! is_static "$BUSYBOX"; then
    echo "make-test-images: $BUSYBOX is missing or not static after installing busybox-static" >&2
    exit 1
fi

ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var,run,data}
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
# One symlink per applet, at the path busybox itself reports (/bin/sh, /usr/bin/head, ...).
# `--list-full` prints paths without the leading slash (usr/bin/head).
while read -r applet; do
    applet=${applet#/}
    [[ -z $applet || $applet == bin/busybox ]] && continue
    mkdir -p "$ROOTFS/$(dirname "$applet")"
    ln -sf /bin/busybox "$ROOTFS/$applet"
done < <("$BUSYBOX" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"

tar -C "$ROOTFS" -c . | docker import \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$IMAGE" >/dev/null
echo "make-test-images: built $IMAGE"
