#!/usr/bin/env bash
# Tests the release artefacts of scripts/package.sh (issue 14). Run as root on
# Debian by scripts/test.sh AFTER the differential and upstream suites: it
# installs the Debian package on this machine for a short while, which makes
# /usr/lib/cni/host-local ours. The package is always removed at the end
# (trap), also on failure.
#
# 1. Build both artefacts.
# 2. Tarball: exact entries, owner 0, mtimes = SOURCE_DATE_EPOCH, checksum
#    files in upstream's format verify, binaries run; a second build of the
#    tarball and of the .deb is byte-identical.
# 3. lintian: no errors.
# 4. dpkg in a scratch root (dpkg --root, scripts run with DPKG_ROOT, so
#    nothing on this machine changes): every order of installing, upgrading,
#    removing and purging with and without containernetworking-plugins leaves
#    exactly one host-local, the right one, and the Go package verifies.
# 5. On this machine, over Debian's containernetworking-plugins: install,
#    check the diversion and VERSION, run the podman e2e suite with podman's
#    default plugin directories, remove and purge, check the Go binary is back
#    (dpkg --verify clean) and podman works with it.
#    PACKAGE_TEST_NO_INSTALL=1 stops before this step (not allowed in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
step() { printf '\n==> package-test: %s\n' "$*"; }
fail() {
  echo "package-test: FAIL: $*" >&2
  exit 1
}
GO_DIVERTED=/usr/lib/cni/host-local.go
PLUGIN=/usr/lib/cni/host-local
DIVERSION="diversion of $PLUGIN to $GO_DIVERTED by host-local-rs"

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null 2>&1; then
  [ "${IPAM_REQUIRE_ALL:-0}" = 1 ] && fail "needs root and dpkg (IPAM_REQUIRE_ALL=1)"
  echo "*** SKIPPED package-test: needs root on Debian ***" >&2
  exit 0
fi
for tool in lintian cargo-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    [ "${IPAM_REQUIRE_ALL:-0}" = 1 ] && fail "$tool missing (IPAM_REQUIRE_ALL=1)"
    echo "*** SKIPPED package-test: $tool missing (apt-get install lintian; cargo install --locked cargo-deb) ***" >&2
    exit 0
  fi
done

tmp=$(mktemp -d /tmp/pkg-test.XXXXXX)
cleanup() {
  local rc=$?
  # Never leave the machine with our package installed (in any state).
  # (No `| grep -q` in this script: with pipefail its early exit fails the pipe.)
  if dpkg-query -W host-local-rs >/dev/null 2>&1; then
    echo "package-test: removing host-local-rs (cleanup)" >&2
    dpkg -P host-local-rs >&2 || rc=1
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# "ours" or "go" or "none" for a host-local binary, from its VERSION answer:
# ours lists spec 1.1.0, the Go reference v1.1.1 does not.
kind_of() {
  [ -e "$1" ] || {
    echo none
    return
  }
  local out
  out=$(CNI_COMMAND=VERSION "$1" </dev/null) || fail "$1 VERSION failed: $out"
  case "$out" in
    *'"1.1.0"'*) echo ours ;;
    *'"1.0.0"'*) echo go ;;
    *) fail "$1 VERSION: unexpected answer $out" ;;
  esac
}

# --- 1. build ---------------------------------------------------------------
step "scripts/package.sh"
mapfile -t built < <(scripts/package.sh)
tgz=${built[0]:-}
deb=${built[1]:-}
[ -f "$tgz" ] && [ -f "$deb" ] || fail "scripts/package.sh failed"
dist=$(dirname "$tgz")
name=$(basename "$tgz")
ours_bin=$(dirname "$(scripts/build-release.sh 2>/dev/null | sed -n 1p)")/host-local
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

# --- 2. tarball -------------------------------------------------------------
step "tarball $name"
[[ $name =~ ^host-local-rs-linux-[a-z0-9]+-v[0-9][^/]*\.tgz$ ]] || fail "tarball name $name"
for alg in 256 512; do
  sumfile="$tgz.sha$alg"
  grep -Eq "^[0-9a-f]{$((alg / 4))}  $name\$" "$sumfile" ||
    fail "$sumfile is not '<hash>  <file>': $(cat "$sumfile")"
  (cd "$dist" && "sha${alg}sum" --quiet -c "$name.sha$alg") || fail "sha$alg does not verify"
done
entries=$(tar -tzf "$tgz" | tr '\n' ' ')
[ "$entries" = "./ ./LICENSE ./README.md ./host-local ./host-local-etcd ./ipamctl " ] || fail "tarball entries: $entries"
tar --numeric-owner --full-time -tvzf "$tgz" | while read -r mode owner _size day time _path; do
  [ "$owner" = 0/0 ] || fail "owner $owner in the tarball"
  [ "$(date -u -d "$day $time UTC" +%s)" = "$epoch" ] || fail "mtime $day $time is not the commit's"
  case "$mode" in -rwxr-xr-x | -rw-r--r-- | drwxr-xr-x) ;; *) fail "mode $mode" ;; esac
done
mkdir "$tmp/unpacked"
tar -xzf "$tgz" -C "$tmp/unpacked"
[ "$(kind_of "$tmp/unpacked/host-local")" = ours ] || fail "unpacked host-local is not ours"
"$tmp/unpacked/ipamctl" --version >/dev/null || fail "unpacked ipamctl does not run"
cp "$tgz" "$tmp/first.tgz"
cp "$deb" "$tmp/first.deb"
scripts/package.sh >/dev/null 2>&1 || fail "second build"
cmp "$tmp/first.tgz" "$tgz" || fail "a second build of the tarball differs"
cmp "$tmp/first.deb" "$deb" || fail "a second build of the Debian package differs"
echo "tarball ok: entries, owners, mtimes, checksums; second build of both byte-identical"

# --- 3. lintian -------------------------------------------------------------
step "lintian $(basename "$deb")"
# Warnings that remain are explained in the README (Install).
lintian --fail-on error "$deb" || fail "lintian reports errors"

# --- 4. every order in a scratch dpkg root ----------------------------------
step "dpkg orders in a scratch root"
# containernetworking-plugins' own .deb, without its maintainer scripts (they
# only handle its systemd units and would act on this machine).
(cd "$tmp" && apt-get download -q containernetworking-plugins >/dev/null 2>&1) ||
  fail "apt-get download containernetworking-plugins"
dpkg-deb -R "$tmp"/containernetworking-plugins_*.deb "$tmp/cnp"
rm -f "$tmp"/cnp/DEBIAN/{preinst,postinst,prerm,postrm}
dpkg-deb -Zgzip -z1 --root-owner-group -b "$tmp/cnp" "$tmp/cnp.deb" >/dev/null
rm -rf "$tmp/cnp"
# A newer version of ours, for the upgrade case.
dpkg-deb -R "$deb" "$tmp/newer"
sed -i 's/^Version: \(.*\)-1$/Version: \1-2/' "$tmp/newer/DEBIAN/control"
dpkg-deb -Zgzip -z1 --root-owner-group -b "$tmp/newer" "$tmp/newer.deb" >/dev/null
rm -rf "$tmp/newer"

host_diversions=$(dpkg-divert --list | sort)
R=""
sbx_new() {
  R="$tmp/root$1"
  mkdir -p "$R"/var/lib/dpkg/{info,updates,triggers}
  touch "$R"/var/lib/dpkg/{status,available,diversions}
}
sbx() { dpkg --root="$R" --force-script-chrootless --force-depends --log=/dev/null "$@" >/dev/null 2>"$tmp/dpkg.err" || fail "dpkg $*: $(cat "$tmp/dpkg.err")"; }
# expect <case> <kind at host-local> <kind at host-local.go> <diverted yes|no>
expect() {
  local at go div
  at=$(kind_of "$R$PLUGIN")
  go=$(kind_of "$R$GO_DIVERTED")
  div=no
  grep -qxF "$DIVERSION" <<<"$(dpkg-divert --root "$R" --list)" && div=yes
  [ "$at $go $div" = "$2 $3 $4" ] ||
    fail "$1: host-local=$at host-local.go=$go diverted=$div, want $2 $3 $4"
  if dpkg --root="$R" -s containernetworking-plugins >/dev/null 2>&1; then
    local v
    v=$(dpkg --root="$R" --verify containernetworking-plugins 2>&1) || true
    [ -z "$v" ] || fail "$1: dpkg --verify containernetworking-plugins: $v"
  fi
  echo "  $1: host-local=$at host-local.go=$go diverted=$div"
}

sbx_new 1
echo "Go package first, then ours:"
sbx -i "$tmp/cnp.deb"; expect "go package" go none no
sbx -i "$deb"; expect "ours installed" ours go yes
sbx -i "$deb"; expect "ours reinstalled" ours go yes
sbx -i "$tmp/newer.deb"; expect "ours upgraded" ours go yes
sbx -i "$tmp/cnp.deb"; expect "go package reinstalled" ours go yes
sbx -r host-local-rs; expect "ours removed" go none no
sbx -P host-local-rs; expect "ours purged" go none no
sbx_new 2
echo "Ours first, then the Go package:"
sbx -i "$deb"; expect "ours alone" ours none yes
sbx -i "$tmp/cnp.deb"; expect "go package added" ours go yes
sbx -P host-local-rs; expect "ours purged" go none no
sbx_new 3
echo "Ours alone, the Go package removed under ours:"
sbx -i "$tmp/cnp.deb"
sbx -i "$deb"
sbx -r containernetworking-plugins; expect "go package removed" ours none yes
sbx -r host-local-rs; expect "ours removed" none none no
sbx -P host-local-rs; expect "ours purged" none none no
[ "$(dpkg-divert --list | sort)" = "$host_diversions" ] ||
  fail "the scratch root changed this machine's diversions"

# --- 5. this machine --------------------------------------------------------
if [ "${PACKAGE_TEST_NO_INSTALL:-0}" = 1 ]; then
  echo "package-test: PACKAGE_TEST_NO_INSTALL=1: not installing on this machine" >&2
  [ "${IPAM_REQUIRE_ALL:-0}" = 1 ] && fail "PACKAGE_TEST_NO_INSTALL=1 but IPAM_REQUIRE_ALL=1"
  echo "package-test: passed (without step 5) in $(($(date +%s) - t0)) s"
  exit 0
fi
step "install over this machine's containernetworking-plugins"
dpkg -s containernetworking-plugins >/dev/null 2>&1 || fail "containernetworking-plugins not installed"
[ "$(kind_of "$PLUGIN")" = go ] || fail "$PLUGIN is not the Go reference before installing"
go_sum=$(sha256sum <"$PLUGIN")
# Compile the test binary before the install window, to keep it short.
cargo test -q -p host-local --test integration --no-run
w0=$(date +%s)
dpkg -i "$deb"
grep -qxF "$DIVERSION" <<<"$(dpkg-divert --list)" || fail "dpkg-divert --list lacks: $DIVERSION"
[ "$(kind_of "$PLUGIN")" = ours ] || fail "$PLUGIN does not answer VERSION with 1.1.0"
cmp -s "$PLUGIN" "$ours_bin" || fail "$PLUGIN is not the binary just built"
[ "$(sha256sum <"$GO_DIVERTED")" = "$go_sum" ] || fail "$GO_DIVERTED is not the Go binary"
for f in /usr/bin/ipamctl /usr/share/man/man1/ipamctl.1.gz \
  /usr/share/bash-completion/completions/ipamctl /usr/share/zsh/vendor-completions/_ipamctl \
  /usr/share/fish/vendor_completions.d/ipamctl.fish /usr/share/doc/host-local-rs/copyright \
  /usr/share/doc/host-local-rs/README.md /usr/share/doc/host-local-rs/SECURITY.md \
  /usr/share/doc/host-local-rs/SCHEMA.md /usr/lib/systemd/system/ipamctl-reconcile.service \
  /usr/lib/systemd/system/ipamctl-reconcile.timer; do
  [ -s "$f" ] || fail "$f missing"
done
grep -q '^\.TH ipamctl 1' <<<"$(zcat /usr/share/man/man1/ipamctl.1.gz)" || fail "man page"
# The reconcile timer is shipped disabled.
if [ -d /run/systemd/system ]; then
  [ "$(systemctl is-enabled ipamctl-reconcile.timer 2>/dev/null || true)" = disabled ] ||
    fail "ipamctl-reconcile.timer is not shipped disabled"
fi
# An etcd-store call is handed to /usr/lib/cni/host-local-etcd: with no member
# listening it answers the etcd store's "try again later" (11), not "cannot
# run host-local-etcd" (7).
cmp -s /usr/lib/cni/host-local-etcd "$(dirname "$ours_bin")/host-local-etcd" || fail "host-local-etcd is not the binary just built"
etcd_conf='{"cniVersion":"1.0.0","name":"pkg-etcd","type":"bridge","ipam":{"type":"host-local","subnet":"10.99.0.0/24",
 "store":{"type":"etcd","endpoints":["http://127.0.0.1:9"],"node":"pkg","timeout":"1s"}}}'
out=$(CNI_COMMAND=ADD CNI_CONTAINERID=pkg1 CNI_NETNS=/var/run/netns/pkg1 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
  "$PLUGIN" <<<"$etcd_conf" || true)
grep -Eq '"code": ?11' <<<"$out" || fail "etcd hand-over from $PLUGIN: $out"
echo "installed: diversion listed, $PLUGIN answers 1.1.0, Go binary at $GO_DIVERTED"

step "podman e2e suite with podman's default plugin directories (package installed)"
HOST_LOCAL_E2E_INSTALLED=1 IPAM_REQUIRE_ALL=1 \
  cargo test -q -p host-local --test integration -- podman || fail "podman suite on the installed package"

step "remove and purge"
dpkg -r host-local-rs
dpkg -P host-local-rs
echo "install window: $(($(date +%s) - w0)) s"
if grep -qF "by host-local-rs" <<<"$(dpkg-divert --list)"; then fail "diversion left after purge"; fi
[ "$(sha256sum <"$PLUGIN")" = "$go_sum" ] || fail "$PLUGIN is not the Go binary after removal"
[ ! -e "$GO_DIVERTED" ] || fail "$GO_DIVERTED left after removal"
v=$(dpkg --verify containernetworking-plugins 2>&1) || true
[ -z "$v" ] || fail "dpkg --verify containernetworking-plugins: $v"
[ ! -e /usr/bin/ipamctl ] || fail "/usr/bin/ipamctl left after purge"
[ ! -e /usr/lib/cni/host-local-etcd ] || fail "/usr/lib/cni/host-local-etcd left after purge"
echo "removed: Go binary back, dpkg --verify containernetworking-plugins clean"

step "podman with the Go host-local again"
HOST_LOCAL_E2E_PLUGIN_DIR=/usr/lib/cni IPAM_REQUIRE_ALL=1 \
  cargo test -q -p host-local --test integration -- podman_e2e_two_containers ||
  fail "podman with the Go host-local after removal"

echo "package-test: passed in $(($(date +%s) - t0)) s"
