"""What one call asks for is what it gets: a call's options are resolved once (call.py), over
the pair's, and every option reaches the generation or is refused."""

from __future__ import annotations

import dataclasses

import pytest

import specpair
from specpair.call import CallOptions, DraftOptions, resolve_call
from specpair.errors import SpecpairError

from .toy import LETTERS, ToyBackend, walk_table

REPEATING = LETTERS * 2  # a lookup finds every continuation in the prompt


@pytest.mark.parametrize("lookup", ["ngram", "suffix"])
def test_a_per_call_lookup_drafts_with_its_own_K_not_autos(lookup):
    """On an auto pair (the server's default), a request for a plain lookup drafts at the
    lookup's K (4), not at auto's largest K (64): a rejected 64-token draft costs 15-30 steps
    on a CPU."""
    pair = specpair.load(ToyBackend(walk_table()), draft="auto", fresh=True)
    gen = pair.generate(REPEATING, draft=lookup, max_tokens=40)
    assert gen.drafter == lookup
    assert gen.stats.drafted > 0
    assert len(gen.stats.reached_at) <= 4  # the longest draft of any round


def test_an_explicit_K_still_wins_for_a_per_call_lookup():
    pair = specpair.load(ToyBackend(walk_table()), draft="auto", fresh=True)
    gen = pair.generate(REPEATING, draft="ngram", draft_tokens=8, max_tokens=40)
    assert len(gen.stats.reached_at) == 8


def test_draft_system_follows_the_calls_drafter_not_the_pairs():
    # auto pair, a per-call model draft: the draft's system prompt applies
    call = resolve_call(DraftOptions(draft="auto"),
                        CallOptions(draft="small.gguf", draft_system="Be brief."))
    assert call.draft == "small.gguf" and call.draft_system == "Be brief."
    # a model pair, a per-call lookup: there is no model to give it to, so it is refused
    with pytest.raises(SpecpairError, match="draft_system"):
        resolve_call(DraftOptions(draft="small.gguf"),
                     CallOptions(draft="ngram", draft_system="Be brief."))


def test_typical_acceptance_parameters_reach_the_rule_or_are_refused():
    pair = specpair.load(ToyBackend(walk_table()), draft="ngram")
    gen = pair.generate(REPEATING, accept="typical", typical_epsilon=0.31, typical_delta=0.07,
                        temperature=0.8, seed=1, max_tokens=8)
    assert gen.acceptance["epsilon"] == 0.31 and gen.acceptance["delta"] == 0.07
    with pytest.raises(SpecpairError, match="typical"):
        pair.generate(REPEATING, typical_epsilon=0.31, max_tokens=8)


def test_an_unknown_option_is_refused_not_ignored():
    pair = specpair.load(ToyBackend(walk_table()), draft="ngram")
    with pytest.raises(SpecpairError, match="temprature"):
        pair.generate(REPEATING, temprature=0.5, max_tokens=4)


def test_suffix_cache_off_writes_nothing_to_the_store(tmp_path):
    """A call that asked for no cross-request memory leaves none behind."""
    store = tmp_path / "store.json"
    pair = specpair.load(ToyBackend(walk_table()), draft="suffix", suffix_store=str(store))
    pair.generate("abcdefgh", suffix_cache="off", max_tokens=8)
    assert not store.exists()
    pair.generate("abcdefgh", max_tokens=8)  # the default (the pair's global tree): kept
    assert store.exists()


# -- every per-call option reaches the resolved call, and nothing else --------------------------
# option: (a value, the base call it is set on, the path in `Call` it must change)
REACHES = {
    "max_tokens": (7, {}, "config.max_tokens"),
    "temperature": (0.5, {}, "config.sampling.temperature"),
    "top_k": (3, {}, "config.sampling.top_k"),
    "top_p": (0.5, {}, "config.sampling.top_p"),
    "min_p": (0.1, {}, "config.sampling.min_p"),
    "seed": (5, {}, "config.sampling.seed"),
    "stop": (("zz",), {}, "config.stop"),
    "lenience": (0.5, {}, "config.acceptance.lenience"),
    "accept": ("typical", {}, "config.acceptance.kind"),
    "typical_epsilon": (0.2, {"accept": "typical"}, "config.acceptance.epsilon"),
    "typical_delta": (0.2, {"accept": "typical"}, "config.acceptance.delta"),
    "draft": ("none", {}, "draft"),
    "draft_tokens": (9, {}, "config.draft_tokens"),
    "draft_system": ("s", {"draft": "m.gguf"}, "draft_system"),
    "draft_lora": ("a.gguf", {"draft": "m.gguf"}, "draft_lora"),
    "suffix_cache": ("global", {}, "scope"),
}


def _flat(value, prefix="") -> dict:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            out |= _flat(getattr(value, f.name), f"{prefix}{f.name}.")
        return out
    return {prefix.rstrip("."): value}


def test_the_table_covers_every_call_option():
    assert set(REACHES) == {f.name for f in dataclasses.fields(CallOptions)}


@pytest.mark.parametrize("name", sorted(REACHES))
def test_each_call_option_reaches_the_call_and_nothing_else(name):
    value, base, path = REACHES[name]
    pair = DraftOptions(draft="ngram", suffix_store="s.json")
    before = _flat(resolve_call(pair, CallOptions(**base), partition="p"))
    after = _flat(resolve_call(pair, CallOptions(**base, **{name: value}), partition="p"))
    changed = {k for k in before if before[k] != after[k]}
    assert after[path] == value
    # the drafter decides K, and whether the suffix tree (and store) is used at all
    # (and a lossy rule's value names its kind)
    allowed = {"draft": {"config.draft_tokens", "adaptive", "tree", "store"},
               "suffix_cache": {"cache_domain", "tree", "store"},
               "lenience": {"config.acceptance.kind"}}.get(name, set())
    assert path in changed and changed <= allowed | {path}, changed


def test_a_lora_goes_with_the_pairs_own_model_draft_or_the_calls():
    pair = DraftOptions(draft="small.gguf", draft_lora="small-lora.gguf")
    assert resolve_call(pair, CallOptions()).draft_lora == "small-lora.gguf"
    # another model draft named by the call is that model as it is, unless the call says
    assert resolve_call(pair, CallOptions(draft="other.gguf")).draft_lora is None
    assert resolve_call(pair, CallOptions(draft="other.gguf", draft_lora="o.gguf")
                        ).draft_lora == "o.gguf"
    assert resolve_call(pair, CallOptions(draft="none")).draft_lora is None
    with pytest.raises(SpecpairError, match="draft_lora.*adapts a model draft"):
        resolve_call(pair, CallOptions(draft="suffix", draft_lora="o.gguf"))
    with pytest.raises(SpecpairError, match="adapts a model draft"):
        DraftOptions(draft="auto", draft_lora="small-lora.gguf")


def test_a_layers_fields_win_only_where_said():
    server = CallOptions(temperature=0.9, top_p=0.8, max_tokens=100)
    request = CallOptions(temperature=0.0)
    merged = request.over(server)
    assert (merged.temperature, merged.top_p, merged.max_tokens) == (0.0, 0.8, 100)


# -- review (issue 43) --------------------------------------------------------------------------
def test_a_stop_string_is_one_stop_not_its_characters():
    """stop="zyx" (as the OpenAI API takes it) stops only at "zyx": the walk a->b->c never
    writes it, so the generation runs to max_tokens; it used to stop at the first "x"."""
    pair = specpair.load(ToyBackend(walk_table()), draft="none")
    gen = pair.generate("a", stop="zyx", max_tokens=30)
    assert gen.stats.finish == "max_tokens" and len(gen.text) == 30
    gen = pair.generate("a", stop="xyz", max_tokens=30)
    assert gen.stats.finish == "stop" and gen.text == "bcdefghijklmnopqrstuvw"
    assert pair.generate("a", stop=["q", "zz"], max_tokens=30).text == "bcdefghijklmnop"


@pytest.mark.parametrize("stop", [5, [1, 2], ["ok", None], {"a": 1}])
def test_a_stop_that_is_not_strings_is_refused(stop):
    pair = specpair.load(ToyBackend(walk_table()), draft="none")
    with pytest.raises(SpecpairError, match="stop.*string"):
        pair.generate("a", stop=stop, max_tokens=4)


def test_a_negative_seed_is_refused_with_the_other_sampling_options():
    with pytest.raises(SpecpairError, match="seed"):
        resolve_call(DraftOptions(), CallOptions(seed=-1, temperature=0.7))
    pair = specpair.load(ToyBackend(walk_table()), draft="none")
    with pytest.raises(SpecpairError, match="seed"):
        pair.generate("a", seed=-1, temperature=0.7, max_tokens=4)


def test_interleaved_calls_on_one_pair_never_change_a_streams_text():
    """A second call while a stream was suspended decoded over the first one's cache and
    changed its text ("abc": ehlqwd alone, eeinta with a call in between). Now the same
    thread's second call is refused, and another thread's waits for the stream to end."""
    import threading

    from .toy import MultiToy, random_table

    def pair():
        return specpair.load(MultiToy(random_table(26, 3), n_seq=1), draft="none")

    alone = pair().generate("abc", max_tokens=6).text
    p = pair()
    pieces = p.stream("abc", max_tokens=6)
    first = next(pieces).text
    with pytest.raises(SpecpairError, match="middle of another stream"):
        p.generate("xyz", max_tokens=6)
    other: list[str] = []
    t = threading.Thread(target=lambda: other.append(p.generate("abc", max_tokens=6).text))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # waiting for the stream to end
    rest = "".join(piece.text for piece in pieces)
    t.join(10)
    assert first + rest == alone and other == [alone]
