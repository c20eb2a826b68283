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
# SPECPAIR_ANCHORS=concurrency: several users at once (issue 44): specpair serve one at a time
# (--parallel 1, today's server) and with --parallel C, plain and default, and llama-server
# -np C --kv-unified, plain and ngram-mod; each endpoint measured by closed loops of
# SPECPAIR_CONCURRENCY in flight (default "4"; e.g. "1 2 4 8"), 4C requests a point, C the
# largest of them; SPECPAIR_SPEC_BENCH_PER_CATEGORY defaults to 1 there (13 prompts).
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
LOAD=()
if [ "${SPECPAIR_ANCHORS:-}" = concurrency ]; then
  read -r -a LEVELS <<< "${SPECPAIR_CONCURRENCY:-4}"
  C=$(printf '%s\n' "${LEVELS[@]}" | sort -n | tail -1)
  LOAD=(--concurrency "${LEVELS[@]}")
  LSC=("$LLAMA" -m "$MODEL" -t 2 -c $((4096 * C)) -np "$C" --kv-unified --metrics
       --host 127.0.0.1)
  start 8100 "${SP[@]}" --port 8100 --draft none --parallel 1
  start 8110 "${SP[@]}" --port 8110 --draft none --parallel "$C"
  start 8114 "${SP[@]}" --port 8114 --parallel "$C"  # default flags: auto
  start 8210 "${LSC[@]}" --port 8210
  start 8211 "${LSC[@]}" --port 8211 --spec-type ngram-mod
  ENDPOINTS=(--endpoint http://127.0.0.1:8100 --label "specpair plain, one at a time"
             --endpoint http://127.0.0.1:8110 --label "specpair plain --parallel $C"
             --endpoint http://127.0.0.1:8114 --label "specpair default --parallel $C"
             --endpoint http://127.0.0.1:8210 --label "llama-server plain -np $C"
             --endpoint http://127.0.0.1:8211 --label "llama-server ngram-mod -np $C")
elif [ "${SPECPAIR_ANCHORS:-}" = quick ]; then
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
  if [ "$suite" = spec-bench ] && [ ${#LOAD[@]} -gt 0 ]; then
    n=128; runs=(--per-category "${SPECPAIR_SPEC_BENCH_PER_CATEGORY:-1}" --runs 1)
  elif [ "$suite" = spec-bench ]; then
    n=128; runs=(--per-category "${SPECPAIR_SPEC_BENCH_PER_CATEGORY:-5}")
  elif [ ${#LOAD[@]} -gt 0 ]; then  # under load: the requests come from the load points
    n=200; runs=(--runs 1)
  else  # a workload file: every request once, in order
    n=256; runs=(--runs "$(grep -c . "$suite")")
  fi
  specpair bench "${ENDPOINTS[@]}" --suite "$suite" -n "$n" --timeout 900 "${runs[@]}" \
    "${LOAD[@]}" --json "$OUT/bench-$name.json"
done
python "$(dirname "$0")/anchors_table.py" "$OUT"/bench-*.json --ceiling "$OUT/ceiling.json" \
  > "$OUT/tables.md"
cat "$OUT/tables.md"
