"""`specpair distill` (and `specpair.distill`): a draft trained toward its target on this
machine, exported as a llama.cpp LoRA, and measured.

prompts.py   the JSONL prompt file and its stable train/held-out split
data.py      stage 1: completions and the target's top-k log-probabilities at every position
loss.py      the divergences (forward KL, total variation) over the kept top-k, pure functions
train.py     stage 2: transformers' Trainer with a peft LoRA (or every weight)
export.py    stage 3: the adapter as a llama.cpp LoRA GGUF (gguf's writer and name map), and a
             merged HF folder
evaluate.py  stage 4: held-out acceptance before and after, costs, predicted speedups
job.py       the four stages over one resumable folder
"""
