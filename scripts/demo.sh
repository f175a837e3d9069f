#!/usr/bin/env bash
# The main job on a built-in example: build the plugin, then drive it the way
# a container runtime does, on a temporary data directory and a sample
# dual-stack network: ADD for three containers, CHECK, DEL, printing each
# result and the store it leaves behind.
set -euo pipefail
cd "$(dirname "$0")/.."
# The default build includes the etcd store, whose gRPC code generation needs
# protoc (Debian: protobuf-compiler). The demo uses the disk store only, so
# without protoc it builds the disk-only plugin rather than failing.
features=()
if ! command -v protoc >/dev/null && [ -z "${PROTOC:-}" ]; then
  echo "demo: protoc not found (apt install protobuf-compiler for the etcd store); building the disk-only plugin" >&2
  features=(--no-default-features)
fi
cargo build --release -q -p host-local "${features[@]}"
BIN="$PWD/target/release/host-local"
DATA="$(mktemp -d /tmp/host-local-demo.XXXXXX)"
trap 'rm -rf "$DATA"' EXIT

CONF=$(cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "demo-net",
  "type": "bridge",
  "ipam": {
    "type": "host-local",
    "dataDir": "$DATA",
    "ranges": [
      [{"subnet": "10.88.0.0/24", "rangeStart": "10.88.0.10", "rangeEnd": "10.88.0.250", "gateway": "10.88.0.1"}],
      [{"subnet": "fd00:88::/64"}]
    ],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
  }
}
JSON
)

plugin() { # COMMAND CONTAINER [extra env...]
  local cmd=$1 id=$2; shift 2
  env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="/var/run/netns/$id" \
    CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin "$@" "$BIN" <<<"$CONF"
}

step() { printf '\n\033[1m$ CNI_COMMAND=%s CNI_CONTAINERID=%s host-local\033[0m\n' "$1" "$2"; }

echo "data directory: $DATA"
for c in web-1 web-2 db-1; do
  step ADD "$c"; plugin ADD "$c"; echo
done
step "ADD (CNI_ARGS IP=10.88.0.99)" cache-1; plugin ADD cache-1 CNI_ARGS="IgnoreUnknown=1;IP=10.88.0.99"; echo
step CHECK web-2; plugin CHECK web-2 && echo "(exit 0: web-2 holds its reservations)"
step DEL web-2; plugin DEL web-2 && echo "(exit 0)"
step "CHECK after DEL" web-2; plugin CHECK web-2 || echo "(exit $?: as expected, web-2 holds nothing now)"
step "DEL again (idempotent)" web-2; plugin DEL web-2 && echo "(exit 0)"

printf '\n\033[1mThe store, in the reference layout (%s/demo-net):\033[0m\n' "$DATA"
for f in "$DATA"/demo-net/*; do
  printf '  %-22s %s\n' "$(basename "$f")" "$(tr '\r\n' ' /' <"$f")"
done
