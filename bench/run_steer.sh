#!/usr/bin/env bash
# Issue 14's study on the real pair (docs/STEERING.md): 0.5B drafting "like a pirate" for the
# 1.5B, 100 samples x 128 tokens per setting, the settings interleaved. About 2.3 hours on a
# 2-core CPU. Every sample goes to the samples file as it finishes: rerun this script after a
# stop and it goes on from there. Outputs land in bench-out/steer/ (ignored by git).
set -euo pipefail
out=${OUT:-bench-out/steer}
mkdir -p "$out"
exec specpair steer \
  --draft-system "You are a pirate. Start every sentence with 'Arr,' and call the user 'matey'." \
  --prompt "Tell me about your favourite place to visit." \
  --trait pirate --samples "${SAMPLES:-100}" -n 128 --temperature 0.8 --seed 0 -k 4 \
  --leniences 0.1 1e-5 1e-10 \
  --samples-file "$out/samples.jsonl" --json "$out/report.json" \
  --markdown "$out/report.md" --plot "$out/steer.png"
