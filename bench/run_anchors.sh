#!/usr/bin/env bash
# Issue 21's side-by-side measurement: specpair's lookups and llama.cpp's own llama-server
# n-gram modes, each against its own engine's plain decoding, all through the same HTTP path
# (`specpair bench --endpoint`, requests interleaved across the servers, one at a time).
#   usage: bench/run_anchors.sh LLAMA_SERVER OUTDIR [SUITE ...]
# SUITE: spec-bench (needs SPECPAIR_SPEC_BENCH, see README) and/or a .jsonl file; defaults to
# Spec-Bench (SPECPAIR_SPEC_BENCH_PER_CATEGORY requests per category, default 5: the 65 requests
# issue 25's target names; 128 tokens), bench/repeated_task.jsonl and bench/long_copy.jsonl
# (256 tokens). SPECPAIR_ANCHORS=quick runs four servers only: specpair plain and default,
# llama-server plain and ngram-mod (the comparison issue 25's targets name).
# Nothing else may run meanwhile: 2 cores, and a busy machine is not a measurement.
set -euo pipefail
LLAMA=${1:?usage: bench/run_anchors.sh LLAMA_SERVER OUTDIR [SUITE ...]}
OUT=${2:?usage: bench/run_anchors.sh LLAMA_SERVER OUTDIR [SUITE ...]}
shift 2
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(spec-bench "$(dirname "$0")/repeated_task.jsonl"
                                   "$(dirname "$0")/long_copy.jsonl")
mkdir -p "$OUT"
MODEL=$(specpair models path qwen2.5-coder-1.5b)
python "$(dirname "$0")/ceiling.py" > "$OUT/ceiling.json"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() {  # start PORT COMMAND...
  local port=$1; shift
  "$@" > "$OUT/server-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && return 0
    sleep 1
  done
  echo "server on $port did not start" >&2; exit 1
}
SP=(specpair serve --target "$MODEL" --threads 2 --n-ctx 4096 --max-tokens-cap 512)
LS=("$LLAMA" -m "$MODEL" -t 2 -c 4096 -np 1 --metrics --host 127.0.0.1)
if [ "${SPECPAIR_ANCHORS:-}" = quick ]; then
  start 8100 "${SP[@]}" --port 8100 --draft none
  start 8104 "${SP[@]}" --port 8104  # default flags: auto
  start 8200 "${LS[@]}" --port 8200
  start 8201 "${LS[@]}" --port 8201 --spec-type ngram-mod
  ENDPOINTS=(--endpoint http://127.0.0.1:8100 --label "specpair plain"
             --endpoint http://127.0.0.1:8104 --label "specpair default (auto)"
             --endpoint http://127.0.0.1:8200 --label "llama-server plain"
             --endpoint http://127.0.0.1:8201 --label "llama-server ngram-mod")
else
  start 8100 "${SP[@]}" --port 8100 --draft none
  start 8101 "${SP[@]}" --port 8101 --draft ngram --adaptive
  start 8102 "${SP[@]}" --port 8102 --draft suffix --adaptive --suffix-cache off
  start 8103 "${SP[@]}" --port 8103 --draft suffix --adaptive --suffix-cache global
  start 8104 "${SP[@]}" --port 8104  # default flags: auto, the suffix lookup, one global tree
  start 8200 "${LS[@]}" --port 8200
  start 8201 "${LS[@]}" --port 8201 --spec-type ngram-mod
  start 8202 "${LS[@]}" --port 8202 --spec-type ngram-cache
  ENDPOINTS=(--endpoint http://127.0.0.1:8100 --label "specpair plain"
             --endpoint http://127.0.0.1:8101 --label "specpair ngram"
             --endpoint http://127.0.0.1:8102 --label "specpair suffix (request)"
             --endpoint http://127.0.0.1:8103 --label "specpair suffix (global)"
             --endpoint http://127.0.0.1:8104 --label "specpair default (auto)"
             --endpoint http://127.0.0.1:8200 --label "llama-server plain"
             --endpoint http://127.0.0.1:8201 --label "llama-server ngram-mod"
             --endpoint http://127.0.0.1:8202 --label "llama-server ngram-cache")
fi
for suite in "${SUITES[@]}"; do
  name=$(basename "$suite" .jsonl)
  if [ "$suite" = spec-bench ]; then
    n=128; runs=(--per-category "${SPECPAIR_SPEC_BENCH_PER_CATEGORY:-5}")
  else  # a workload file: every request once, in order
    n=256; runs=(--runs "$(grep -c . "$suite")")
  fi
  specpair bench "${ENDPOINTS[@]}" --suite "$suite" -n "$n" --timeout 900 "${runs[@]}" \
    --json "$OUT/bench-$name.json"
done
python "$(dirname "$0")/anchors_table.py" "$OUT"/bench-*.json --ceiling "$OUT/ceiling.json" \
  > "$OUT/tables.md"
cat "$OUT/tables.md"
