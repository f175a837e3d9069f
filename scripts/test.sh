#!/usr/bin/env bash
# The whole test suite: unit tests, the integration binary (every spec version,
# upstream v1.1.1 host-local tests ported to the binary,
# differential against the Go reference, mixed use, races, crash and fault
# injection, hostile input, sustained load, bridge, podman and containerd CRI
# end to end), the operator CLI's tests, a short fuzzing pass, a benchmark
# smoke run and, last, the release artefacts (build, lintian, install over the
# Go package, remove).
#
# As root on Debian it first installs the packages the suites need (the Go
# reference plugin, podman, ...) and then refuses to skip any suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $(grep -v '^#' .ci/packages); do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q $missing
  fi
  export IPAM_REQUIRE_ALL="${IPAM_REQUIRE_ALL:-1}"
else
  echo "NOTE: not root (or not Debian): suites needing root or packages will report SKIPPED" >&2
fi

step() { printf '\n==> %s\n' "$*"; }

if cargo fmt --version >/dev/null 2>&1; then
  step "cargo fmt --check"; cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  step "cargo clippy"; cargo clippy --workspace --all-targets -q -- -D warnings
fi
step "cargo test (workspace)"
cargo test --workspace

# Coverage-guided fuzzing of every parser of outside input, bounded in time.
if ! cargo fuzz --version >/dev/null 2>&1 && [ "${IPAM_REQUIRE_ALL:-0}" = 1 ]; then
  step "cargo install cargo-fuzz"
  cargo install -q --locked cargo-fuzz
fi
if cargo fuzz --version >/dev/null 2>&1; then
  step "fuzzing (${FUZZ_SECONDS:-8} s per target)"
  FUZZ_SECONDS="${FUZZ_SECONDS:-8}" scripts/fuzz.sh
else
  echo "SKIPPED fuzzing: cargo-fuzz not installed (cargo install cargo-fuzz)" >&2
fi

# The benchmark must keep working; its figures are for the README, not a gate.
# It measures the static release build, which scripts/package.sh reuses below.
if [ -x /usr/lib/cni/host-local ]; then
  step "benchmark smoke run (ipam-bench --quick)"
  ours=$(scripts/build-release.sh | sed -n 1p)
  cargo run --release -q -p ipam-bench -- --quick --ours "$ours"
else
  echo "SKIPPED benchmark smoke run: /usr/lib/cni/host-local missing" >&2
fi

# The Debian package and the release tarball. Last: it installs the package on
# this machine for about a minute, which makes /usr/lib/cni/host-local ours
# (the suites above must compare against the Go binary), and removes it again
# at its end, also on failure.
if ! cargo deb --version >/dev/null 2>&1 && [ "${IPAM_REQUIRE_ALL:-0}" = 1 ]; then
  step "cargo install cargo-deb"
  cargo install -q --locked cargo-deb
fi
step "package test (scripts/package-test.sh)"
scripts/package-test.sh
