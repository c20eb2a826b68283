"""`draft="auto"`: which drafter and how many tokens, every round, from measured costs.

planner.py    which candidates (lookups always; a model only if its costs can win), their priors;
              what a run measured, remembered for the next
adaptive.py   per round: which drafter and K, or a plain step (learned online, regret bounded)
costmodel.py  Leviathan et al.'s expected tokens per round over measured costs (shared with
              `specpair advise`)
curve.py      the target's verify cost per batch size, learned online
costs.py      the cost cache on disk: keyed, validated, medians of runs, locked writes
"""
