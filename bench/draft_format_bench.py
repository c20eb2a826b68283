"""Issue 12: should a text-level draft read the request in its own chat template, or as text?

    python bench/draft_format_bench.py [--suites story code edit] [--prompts 2] [-n 64]

Greedy, so the target's output is the same whatever the draft reads: only acceptance differs.
For each draft (Gemma 3 270M; Qwen2.5-Coder-0.5B forced through text) and each way of showing it
the request, it decodes the suites' first prompts with K = 4 and prints acceptance and mean
acceptance length:
- target text: the target's whole templated prompt (Qwen's markup and default system prompt)
  read by the draft as text; what TextDrafter does when given nothing else;
- own template: the user's message in the draft's own chat template (Gemma's GGUF carries none,
  so Gemma 3's published template is supplied);
- user text: the user's message alone, no template.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from specpair.backends import BackendConfig, load_backend  # noqa: E402
from specpair.core.decode import DecodeConfig  # noqa: E402
from specpair.core.prompt import encode_prompt  # noqa: E402
from specpair.core.stats import DecodeStats  # noqa: E402
from specpair.drafters.crossvocab import TextDrafter  # noqa: E402
from specpair.measure.suites import load_suite  # noqa: E402
from specpair.schedule import decode_steps  # noqa: E402

GEMMA3_TEMPLATE = (  # the opening of Gemma 3's published chat template
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == "
    "'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "<start_of_turn>model\n")


def draft_prompt(draft, target_prompt, text: str, form: str):
    if form == "target text":
        return None  # TextDrafter reads the target's prompt as text
    if form == "own template":
        return encode_prompt(draft, text, chat=True)
    return draft.tokenize(text)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--suites", nargs="+", default=["story", "code", "edit"])
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    config = BackendConfig(n_ctx=4096)
    target = load_backend("qwen2.5-coder-1.5b", config)
    drafts = {"gemma 270M": load_backend("gemma-3-270m", config),
              "qwen 0.5B": load_backend("qwen2.5-coder-0.5b", config)}
    if not getattr(drafts["gemma 270M"], "_chat_template", None):
        drafts["gemma 270M"]._chat_template = GEMMA3_TEMPLATE
    forms = ["target text", "own template", "user text"]
    out: dict = {}
    for suite in args.suites:
        for item in load_suite(suite)[: args.prompts]:
            prompt = encode_prompt(target, item.text, chat=item.chat)
            reference = None
            for name, draft in drafts.items():
                for form in forms:
                    drafter = TextDrafter(draft, target, target_prompt=prompt,
                                          draft_prompt=draft_prompt(draft, prompt, item.text,
                                                                    form))
                    stats, tokens = DecodeStats(), []
                    for step in decode_steps(target, drafter, prompt,
                                             config=DecodeConfig(max_tokens=args.n,
                                                                 draft_tokens=4),
                                             rng=np.random.default_rng(0)):
                        stats.add(step)
                        tokens += step.tokens
                    reference = reference or tokens
                    row = out.setdefault(f"{name} | {form}", {"drafted": 0, "accepted": 0,
                                                              "drafts": 0, "same_output": True})
                    row["drafted"] += stats.drafted
                    row["accepted"] += stats.accepted
                    row["drafts"] += stats.drafts
                    row["same_output"] &= tokens == reference
                    print(f"{suite:5} {name:10} {form:12} accepted {stats.accepted:3}/"
                          f"{stats.drafted:3}", file=sys.stderr, flush=True)
    print("| draft | reads the request as | acceptance | mean acceptance length |")
    print("|---|---|---|---|")
    for key, row in out.items():
        name, form = key.split(" | ")
        print(f"| {name} | {form} | {row['accepted'] / max(1, row['drafted']):.1%} | "
              f"{1 + row['accepted'] / max(1, row['drafts']):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
