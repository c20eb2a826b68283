#!/usr/bin/env bash
# The server measurements (issues 11, 13): specpair serve's overhead against in-process
# generation and the second chat turn's prefix reuse; then bench --endpoint over
# llama-cpp-python's server (plain, and with its prompt-lookup draft) and specpair serve, on
# the edit suite. Loopback only; every server is stopped at the end. ~15 minutes on 2 cores.
# llama-cpp-python's server defaults to half the CPUs (1 thread here): give it 2, as specpair has.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-out
mkdir -p "$out"
if [ -z "${SKIP_OVERHEAD:-}" ]; then
  python bench/serve_overhead.py --runs 5 -n 128 | tee "$out/serve_overhead.txt"
fi

target="$(specpair models path qwen2.5-coder-1.5b)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
python -m llama_cpp.server --model "$target" --host 127.0.0.1 --port 18101 --n_ctx 4096 \
  --n_threads 2 --n_threads_batch 2 \
  --verbose false >/dev/null 2>&1 & pids+=($!)
python -m llama_cpp.server --model "$target" --host 127.0.0.1 --port 18102 --n_ctx 4096 \
  --n_threads 2 --n_threads_batch 2 \
  --verbose false --draft_model prompt-lookup-decoding >/dev/null 2>&1 & pids+=($!)
specpair serve --target "$target" --port 18103 2>/dev/null & pids+=($!)
for port in 18101 18102 18103; do
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
    sleep 1
  done
done
specpair bench --endpoint http://127.0.0.1:18101 --endpoint http://127.0.0.1:18102 \
  --endpoint http://127.0.0.1:18103 --label llama-cpp-python \
  --label "llama-cpp-python + prompt lookup" --label "specpair serve (auto)" \
  --suite edit --runs 3 -n 200 --json "$out/endpoints-edit.json" | tee "$out/endpoints-edit.txt"
