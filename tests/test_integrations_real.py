"""specpair's model draft inside llama-cpp-python's own `Llama`: the real 0.5B drafting for the
real 1.5B. Verification is llama-cpp-python's; the output must be the target's greedy output,
every token checked (up to llama.cpp's numerical near-ties), and drafts must get accepted."""

from __future__ import annotations

import pytest

from specpair.measure.agreement import check_tokens, compare_outputs

pytestmark = pytest.mark.real


def _greedy(llm, prompt: list[int], n: int) -> list[int]:
    out = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        if token == llm.token_eos() or len(out) >= n:
            break
        out.append(token)
    return out


def test_llama_draft_in_llama_cpp_python_is_exact_and_accepted(target, target_path, draft_path):
    from llama_cpp import Llama

    from specpair.integrations.llama_cpp import LlamaDraft

    draft = LlamaDraft(draft_path, target=target_path, num_pred_tokens=4, n_ctx=512)
    plain_llm = Llama(model_path=target_path, n_ctx=512, n_threads=2, verbose=False)
    prompt = plain_llm.tokenize(b"Write a Python function that returns the n-th Fibonacci "
                                b"number, then explain it in two sentences.", add_bos=False)
    plain = _greedy(plain_llm, prompt, 48)
    del plain_llm
    llm = Llama(model_path=target_path, n_ctx=512, n_threads=2, verbose=False,
                draft_model=draft)  # the one changed line
    spec = _greedy(llm, prompt, 48)
    # the same as without a draft, up to a first divergence at a numerical near-tie ...
    first = compare_outputs(target, prompt, plain, spec)
    assert first.ok, first.describe()
    # ... and every token the target's argmax given its own prefix, or a near-tie
    check = check_tokens(target, prompt, spec)
    assert check.ok, check.describe()
    accepted, proposed = draft.acceptance(prompt + spec)
    assert proposed > 0 and accepted > 0
    draft.close()
