"""The core: what speculative decoding is, with no engine, HTTP or measurement in it.

backend.py     the Backend protocol every engine implements (and the cache-sync helper)
drafter.py     the Drafter protocol every drafter implements, with its hooks
decode.py      the decode loop, a generator of steps (plain decoding is k = 0)
verify.py      exact verification, pure numpy functions (the reference)
ops.py         verification and sampling on numpy arrays or torch tensors, chosen once
acceptance.py  opt-in lossy acceptance rules, labelled
sampling.py    temperature / top-k / top-p / min-p, built once, applied to p and q alike
stats.py       Step and DecodeStats: statistics as data
prompt.py      text or a conversation -> prompt tokens
text.py        token ids -> streamed text (UTF-8, stop strings); token strings -> bytes
console.py     where progress and reports go (stderr)
"""
