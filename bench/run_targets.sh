#!/usr/bin/env bash
# The measurements behind docs/MEASUREMENTS.md's "never slower by default" table (issue 10) and
# the near-tie threshold (issue 9). Ratios come from interleaved runs of one bench; run it on an
# otherwise idle machine. Writes bench-out/*.json and *.md. About 50 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-out
mkdir -p "$out"
suites="story code edit bench/heldout/summary.jsonl bench/heldout/chat.jsonl"

# the near-tie threshold: 2,000 tokens over story, edit and code; batches of 2-5 and 9 (K <= 8)
python scripts/near_tie_study.py --suites story:3 edit:3 code:2 -n 250 --batches 2 3 4 5 9 \
  --json "$out/near_tie.json" > "$out/near_tie.txt"

# warm: costs measured once by the adviser (it stores them), then auto as generate runs it
specpair advise --suite story --draft qwen2.5-coder-0.5b ngram --json > "$out/advise.json"
for suite in $suites; do
  name=$(basename "$suite" .jsonl)
  specpair bench --suite "$suite" --draft auto -n 500 --runs 2 \
    --json "$out/warm-$name-500.json" --markdown "$out/warm-$name-500.md"
  specpair bench --suite "$suite" --draft auto -n 64 --runs 4 \
    --json "$out/warm-$name-64.json" --markdown "$out/warm-$name-64.md"
done

# cold: auto with no stored costs or acceptance, every run (a first run on a new machine)
for suite in $suites; do
  name=$(basename "$suite" .jsonl)
  specpair bench --suite "$suite" --draft auto --cold -n 64 --runs 4 \
    --json "$out/cold-$name-64.json" --markdown "$out/cold-$name-64.md"
done

# the reference experiment, shortened: plain vs the seed's model draft (K=4) vs auto
specpair bench --suite story -n 200 --runs 3 \
  --json "$out/reference-story.json" --markdown "$out/reference-story.md"
