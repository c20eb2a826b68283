#!/usr/bin/env bash
# The measurements behind docs/MEASUREMENTS.md's "never slower by default" table (issue 10) and
# the near-tie threshold (issue 9). Ratios come from interleaved runs of one bench; run on an
# otherwise idle machine. Writes bench-out/*.json and *.md. About an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-out
mkdir -p "$out"
runs_long=${RUNS_LONG:-3}
runs_short=${RUNS_SHORT:-5}

# the near-tie threshold: >= 2,000 tokens, K up to 8, both suites (and code)
python scripts/near_tie_study.py --suites story edit code --prompts 3 -n 250 --max-k 8 \
  --json "$out/near_tie.json" | tee "$out/near_tie.txt"

# cold: auto with no stored costs or acceptance, every run (a new machine)
for suite in story code edit bench/heldout/summary.jsonl bench/heldout/chat.jsonl; do
  name=$(basename "$suite" .jsonl)
  specpair bench --suite "$suite" --draft auto --cold -n 64 --runs "$runs_short" \
    --json "$out/cold-$name-64.json" --markdown "$out/cold-$name-64.md"
  specpair bench --suite "$suite" --draft auto --cold -n 500 --runs "$runs_long" \
    --json "$out/cold-$name-500.json" --markdown "$out/cold-$name-500.md"
done

# warm: costs measured once by the adviser (it stores them), then auto as generate runs it
specpair advise --suite story --draft qwen2.5-coder-0.5b ngram --json > "$out/advise.json"
for suite in story code edit bench/heldout/summary.jsonl bench/heldout/chat.jsonl; do
  name=$(basename "$suite" .jsonl)
  specpair bench --suite "$suite" --draft auto -n 64 --runs "$runs_short" \
    --json "$out/warm-$name-64.json" --markdown "$out/warm-$name-64.md"
  specpair bench --suite "$suite" --draft auto -n 500 --runs "$runs_long" \
    --json "$out/warm-$name-500.json" --markdown "$out/warm-$name-500.md"
done

# the reference experiment: plain vs the seed's model draft vs the default (auto)
specpair bench --json "$out/reference-story.json" --markdown "$out/reference-story.md"
