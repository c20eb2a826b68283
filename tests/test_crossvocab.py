"""Drafts whose tokenizers do not line up: toy tokenizers that segment the same text
differently (whole letters vs pairs, characters split into bytes), with greedy output equal to
the target's plain greedy output exactly, over hand-made and randomised cases, and sampled output
distributed as the target's over several tokens."""

from collections import Counter
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.drafters.crossvocab import TextDrafter, complete_utf8
from specpair.schedule import decode_steps


class SegBackend:
    """A toy model over byte pieces: tokenize by longest match, logits from a table indexed by
    the previous token (so any segmentation can be scored)."""

    def __init__(self, pieces, table, *, eos=None, name="seg"):
        self.pieces = [p if isinstance(p, bytes) else p.encode() for p in pieces]
        self.table = np.asarray(table, dtype=np.float32)
        self.n_vocab = len(self.pieces) + (eos is not None)
        self.eos_ids = frozenset() if eos is None else frozenset({len(self.pieces)})
        self.n_ctx, self.name, self.path = 4096, name, name
        self.device = "toy"
        self._tokens = []

    @property
    def n_past(self):
        return len(self._tokens)

    @property
    def tokens(self):
        return self._tokens

    def tokenize(self, text, *, add_bos=True, special=True):
        data, out, i = text.encode(), [], 0
        while i < len(data):
            best = max((j for j, p in enumerate(self.pieces) if data.startswith(p, i)),
                       key=lambda j: len(self.pieces[j]))
            out.append(best)
            i += len(self.pieces[best])
        return out

    def token_bytes(self, token):
        return b"" if token >= len(self.pieces) else self.pieces[token]

    def chat_prompt(self, messages):
        return messages if isinstance(messages, str) else messages[-1]["content"]

    def eval(self, tokens, *, all_logits=True):
        self._tokens.extend(tokens)
        rows = self.table[[t % self.table.shape[0] for t in tokens]][:, : self.n_vocab]
        return rows if all_logits else rows[-1:]

    def rewind(self, n_past):
        del self._tokens[n_past:]

    def synchronize(self):
        pass

    def close(self):
        pass


LETTERS = list("abcde")
PAIRS = LETTERS + ["ab", "cd", "ea", "bb", "dc"]


GREEDY = SamplingConfig()


def decode(target, drafter, prompt, n, sampling=GREEDY, seed=0, k=4):
    out = []
    for step in decode_steps(target, drafter, prompt, rng=np.random.default_rng(seed),
                             config=DecodeConfig(max_tokens=n, draft_tokens=k,
                                                 sampling=sampling)):
        out += step.tokens
    return out


def text_drafter(draft, target, prompt_text):
    return TextDrafter(draft, target, target_prompt=target.tokenize(prompt_text),
                       draft_prompt=draft.tokenize(prompt_text))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), prompt=st.text("abcde", min_size=1, max_size=6),
       k=st.integers(1, 6))
def test_greedy_output_equals_plain_greedy_for_any_segmentation(seed, prompt, k):
    rng = np.random.default_rng(seed)
    target_table = rng.normal(size=(len(LETTERS), len(LETTERS))) * 3
    draft_table = target_table[[PAIRS.index(p[-1]) % 5 for p in PAIRS]] if seed % 2 else \
        rng.normal(size=(len(PAIRS), len(PAIRS))) * 3
    target = SegBackend(LETTERS, target_table)
    plain = decode(target, None, target.tokenize(prompt), 30)
    width = max(0, len(PAIRS) - draft_table.shape[1])
    draft = SegBackend(PAIRS, np.pad(draft_table, ((0, 0), (0, width))))
    spec = decode(SegBackend(LETTERS, target_table), text_drafter(draft, target, prompt),
                  target.tokenize(prompt), 30, k=k)
    assert spec == plain


def test_a_draft_that_predicts_the_text_is_accepted_across_segmentations():
    # the target walks a -> b -> c -> d -> e -> a; the pair-token draft knows the same walk
    walk = np.full((5, 5), -5.0)
    for i in range(5):
        walk[i, (i + 1) % 5] = 5.0
    target = SegBackend(LETTERS, walk)
    draft_table = np.full((len(PAIRS), len(PAIRS)), -5.0)
    for j, piece in enumerate(PAIRS):  # after a piece ending in x, propose the pair "yz"
        nxt = LETTERS[(LETTERS.index(piece[-1]) + 1) % 5]
        after = LETTERS[(LETTERS.index(nxt) + 1) % 5]
        draft_table[j, PAIRS.index(nxt + after) if nxt + after in PAIRS else PAIRS.index(nxt)] = 5
    drafter = text_drafter(SegBackend(PAIRS, draft_table), target, "a")
    steps = list(decode_steps(target, drafter, target.tokenize("a"), rng=np.random.default_rng(0),
                              config=DecodeConfig(max_tokens=20, draft_tokens=4)))
    out = [t for s in steps for t in s.tokens]
    assert "".join(LETTERS[t] for t in out) == "bcdea" * 4
    assert sum(s.n_accepted for s in steps) > 8  # the draft's pairs land as target letters
    assert drafter.translate_seconds >= 0


def test_sampled_output_keeps_the_targets_distribution_over_three_tokens():
    rng = np.random.default_rng(7)
    target_table = rng.normal(size=(5, 5))
    draft_table = rng.normal(size=(len(PAIRS), len(PAIRS))) * 2
    sampling = SamplingConfig(temperature=1.0, seed=1)
    counts = Counter()
    n = 5000
    for i in range(n):
        target = SegBackend(LETTERS, target_table)
        drafter = text_drafter(SegBackend(PAIRS, draft_table), target, "ab")
        out = decode(target, drafter, target.tokenize("ab"), 3, sampling=sampling, seed=i)
        counts[tuple(out)] += 1
    p = np.exp(target_table) / np.exp(target_table).sum(axis=1, keepdims=True)
    keys = list(product(range(5), repeat=3))
    expected = []
    for a, b, c in keys:  # the prompt ends in 'b' (index 1)
        expected.append(p[1, a] * p[a, b] * p[b, c] * n)
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3


def test_characters_split_across_tokens():
    assert complete_utf8("é".encode()[:1]) == 0
    assert complete_utf8("aé".encode()) == 3
    assert complete_utf8(b"a" + "€".encode()[:2]) == 1
    # the target writes é as two byte tokens; the draft has é whole
    target_pieces = [b"a", b"b", "é".encode()[:1], "é".encode()[1:]]
    draft_pieces = ["a", "b", "é"]
    walk = np.full((4, 4), -5.0)
    walk[0, 2] = walk[2, 3] = walk[3, 1] = walk[1, 0] = 5.0  # a é b a é b ...
    target = SegBackend(target_pieces, walk)
    dwalk = np.full((3, 3), -5.0)
    dwalk[0, 2] = dwalk[2, 1] = dwalk[1, 0] = 5.0
    drafter = text_drafter(SegBackend(draft_pieces, dwalk), target, "a")
    plain = decode(SegBackend(target_pieces, walk), None, target.tokenize("a"), 12)
    spec = decode(target, drafter, target.tokenize("a"), 12)
    assert spec == plain


def test_tli_sampled_keeps_the_targets_distribution_over_three_tokens():
    """TLI: the draft's q restricted to shared strings (the single letters; its pairs have no
    target token), renormalised, mapped to target ids, verified by rejection sampling."""
    from specpair.drafters.crossvocab import TLIDrafter

    rng = np.random.default_rng(11)
    target_table = rng.normal(size=(5, 5))
    draft_table = rng.normal(size=(len(PAIRS), len(PAIRS))) * 2
    sampling = SamplingConfig(temperature=1.0, seed=2)
    counts = Counter()
    accepted = drafted = 0
    n = 5000
    for i in range(n):
        target = SegBackend(LETTERS, target_table)
        draft = SegBackend(PAIRS, draft_table)
        shared = [(d, t) for d in range(draft.n_vocab) for t in range(target.n_vocab)
                  if draft.token_bytes(d) and draft.token_bytes(d) == target.token_bytes(t)]
        drafter = TLIDrafter(draft, target, sampling=sampling, rng=np.random.default_rng(i),
                             shared=tuple(np.array(x) for x in zip(*shared)),
                             target_prompt=target.tokenize("ab"),
                             draft_prompt=draft.tokenize("ab"))
        assert drafter.shared == 5  # a..e; the pairs are strings the target does not have
        out = []
        for step in decode_steps(target, drafter, target.tokenize("ab"),
                                 rng=np.random.default_rng(n + i),
                                 config=DecodeConfig(max_tokens=3, draft_tokens=2,
                                                     sampling=sampling)):
            out += step.tokens
            accepted += step.n_accepted
            drafted += step.n_drafted
        counts[tuple(out)] += 1
    p = np.exp(target_table) / np.exp(target_table).sum(axis=1, keepdims=True)
    keys = list(product(range(5), repeat=3))
    expected = [p[1, a] * p[a, b] * p[b, c] * n for a, b, c in keys]
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3
    assert 0 < accepted < drafted


def test_auto_weighs_a_cross_vocabulary_draft_like_any_other(tmp_path, monkeypatch):
    """--draft auto loads a text-level draft where its costs let it win, decodes exactly with
    it, and stores its measured cost per token (translation included) for the next run."""
    from specpair.auto import costs
    from specpair.auto.planner import ModelOption, plan, remember
    from specpair.backends import BackendConfig
    from specpair.drafters import NgramDrafter

    monkeypatch.setenv("SPECPAIR_CACHE", str(tmp_path))
    rng = np.random.default_rng(4)
    table = rng.normal(size=(len(PAIRS), len(PAIRS))) * 3
    target = SegBackend(LETTERS, table[:, : len(LETTERS)], name="target")
    target.path = str(tmp_path / "target.gguf")
    (tmp_path / "target.gguf").write_bytes(b"x" * 1000)
    prompt = target.tokenize("abcab")
    plain = decode(target, None, prompt, 30)
    config = BackendConfig()
    # a GPU-like verify curve: verifying 17 tokens costs little more than one
    costs.save({costs.cost_key("verify", "gguf", target.path, config, "toy"):
                [1.0 + 0.02 * n for n in range(17)]})
    draft = SegBackend(PAIRS, table, name="draft")
    key = costs.cost_key("draft", "gguf", str(tmp_path / "draft.gguf"), config, "toy")
    option = ModelOption(name="draft.gguf", cost_key=key, relative_cost=lambda: 0.1,
                         extra_tokens=lambda: 2, load=lambda: TextDrafter(draft, target))
    p = plan(target, "gguf", config, free=[NgramDrafter()], models=[option], kind="raw")
    assert [c.name for c in p.drafter.candidates] == ["ngram", "draft (text-level)"]
    assert decode(target, p.drafter, prompt, 30) == plain  # exact
    paid = p.drafter.candidates[1]
    assert paid.drafted_tokens > 0
    assert remember(p, config=config)
    stored = costs.load()[key]
    assert stored == pytest.approx(paid.measured_seconds / paid.measured_tokens) and stored > 0
