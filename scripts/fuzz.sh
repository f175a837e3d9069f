#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, one after the other.
#
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   space-separated subset (default: all of `cargo fuzz list`)
#   FUZZ_JOBS      not used: targets run in sequence (small machines, shared CI)
#
# The corpus grows in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>);
# crashes land in fuzz/artifacts/<target>. Exits non-zero on the first target
# that crashes, hangs (> 10 s per input) or exceeds 2 GiB of RSS.
#
# Needs `cargo install cargo-fuzz`. libFuzzer needs nightly compiler flags;
# on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them (set here unless given).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/fuzz"

seconds=${FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
if ! build_log=$(cargo fuzz build -O 2>&1); then
    echo "$build_log" >&2
    echo "fuzz.sh: build failed" >&2
    exit 2
fi

logdir=${FUZZ_LOG_DIR:-$here/fuzz/logs}
mkdir -p "$logdir"
status=0
printf '%-12s %10s %8s %8s %8s %s\n' target execs exec/s cov ft corpus
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    max_len=4096
    case $t in netconf|result|plugin) max_len=16384 ;; esac
    log="$logdir/$t.log"
    if ! cargo fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$max_len" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        echo "fuzz.sh: target $t FAILED, see $log and artifacts/$t/" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2 || true
        status=1
        continue
    fi
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    files=$(find "corpus/$t" -type f | wc -l)
    printf '%-12s %10s %8s %8s %8s %s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$files"
done
exit $status
