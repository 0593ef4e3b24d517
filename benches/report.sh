#!/usr/bin/env bash
# Runs every Palisade benchmark beside its peers and writes benches/RESULTS.md from
# criterion's output (target/criterion/**/new/{benchmark,estimates}.json).
#
#   benches/report.sh                  # the whole report: run this on a quiet machine
#   benches/report.sh stack rate_limit # only these bench files (plus the observability pair)
#
# It runs, from the workspace root:
#   1. cargo bench -p palisade-benches [--bench <name>...]  (features off; every case with its
#      peers in the same group, and the observability bench's `features_off` cases)
#   2. cargo bench -p palisade-benches --features obs --bench observability  (the same
#      success paths with the `metrics` and `tracing` features on, without and with a
#      recorder)
#   3. cargo run -p palisade-benches --release --bin report  (writes benches/RESULTS.md from
#      the cases steps 1 and 2 wrote, so no stale case of an earlier run is mixed in)
#
# Environment: CRITERION_ARGS goes to every bench binary after `--`; e.g.
# CRITERION_ARGS="--warm-up-time 0.1 --measurement-time 0.2" for a smoke run, which also
# marks RESULTS.md as a smoke run at its top. CARGO_TARGET_DIR is honoured. REPORT_NOTE sets
# a banner of your own. PALISADE_BENCH_THREADS=2,4,8,16 runs every contention group at those
# thread counts (default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
criterion_args="${CRITERION_ARGS:-}"
note="${REPORT_NOTE:-}"
if [[ -n "$criterion_args" && -z "$note" ]]; then
    note="Smoke run with shortened criterion times ($criterion_args): not a measurement."
fi

bench_flags=()
for name in "$@"; do
    bench_flags+=(--bench "$name")
done
if [[ $# -gt 0 ]]; then
    bench_flags+=(--bench observability)
fi

# Whole seconds, taken before criterion writes anything of this run.
start=$(date +%s)
# shellcheck disable=SC2086 # CRITERION_ARGS is a list of flags.
cargo bench -p palisade-benches "${bench_flags[@]}" -- $criterion_args
# shellcheck disable=SC2086
cargo bench -p palisade-benches --features obs --bench observability -- $criterion_args

command="benches/report.sh${*:+ $*}"
if [[ -n "$criterion_args" ]]; then
    command="CRITERION_ARGS=\"$criterion_args\" $command"
fi
if [[ -n "${PALISADE_BENCH_THREADS:-}" ]]; then
    command="PALISADE_BENCH_THREADS=$PALISADE_BENCH_THREADS $command"
fi
report_args=(--criterion-dir "$target_dir/criterion" --out benches/RESULTS.md
    --since "$start" --command "$command")
if [[ -n "$note" ]]; then
    report_args+=(--note "$note")
fi
cargo run -q -p palisade-benches --release --bin report -- "${report_args[@]}"
