"""`specpair check` verdicts on synthetic tokenizers (one per verdict) and the real GGUFs."""

import json
import random

import pytest
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from specpair.cli import main
from specpair.tokenizers.compare import COMPATIBLE, IDENTICAL, REMAPPABLE, TEXT_LEVEL, check
from specpair.tokenizers.info import from_hf

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "speculative decoding drafts tokens and verifies them in one pass",
    "def add(a, b):\n    return a + b\n",
    "tokenizers split text into pieces; the pieces become ids",
] * 50
OTHER_CORPUS = [
    "lorem ipsum dolor sit amet, consectetur adipiscing elit",
    "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua",
] * 50
PROBE = "the lazy fox drafts tokens\ndef add(a, b): return a + b\nlorem ipsum dolor\n"


def train(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return json.loads(tok.to_str())


def save(folder, spec, bos="<s>", eos="</s>"):
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": bos,
                                                              "eos_token": eos}))
    return str(folder)


@pytest.fixture(scope="module")
def base():
    return train(CORPUS)


def variant(base, edit):
    spec = json.loads(json.dumps(base))
    edit(spec)
    return spec


def test_same_tokenizer_is_identical(tmp_path, base):
    cmp = check(save(tmp_path / "a", base), save(tmp_path / "b", base), probe_text=PROBE)
    assert cmp.verdict == IDENTICAL
    assert cmp.probe["identical_fraction"] == 1.0


def test_renamed_special_token_is_compatible(tmp_path, base):
    """As between Llama 3 releases: the same id, another name for a special token."""
    def rename(spec):
        for added in spec["added_tokens"]:
            if added["content"] == "</s>":
                added["content"] = "<|eot_id|>"
        spec["model"]["vocab"]["<|eot_id|>"] = spec["model"]["vocab"].pop("</s>")

    cmp = check(save(tmp_path / "a", base),
                save(tmp_path / "b", variant(base, rename), eos="<|eot_id|>"), probe_text=PROBE)
    assert cmp.verdict == COMPATIBLE
    assert any("'</s>'" in r and "'<|eot_id|>'" in r for r in cmp.reasons)


def test_padding_tokens_at_the_end_are_compatible(tmp_path, base):
    """As Qwen models of different sizes: extra special/padding ids after the vocabulary."""
    n = len(base["model"]["vocab"])

    def pad(spec):
        for i in range(8):
            spec["added_tokens"].append({"id": n + i, "content": f"<|pad_{i}|>", "special": True,
                                         "single_word": False, "lstrip": False, "rstrip": False,
                                         "normalized": False})

    cmp = check(save(tmp_path / "a", base), save(tmp_path / "b", variant(base, pad)),
                probe_text=PROBE)
    assert cmp.verdict == COMPATIBLE
    assert any("8 more ids" in r and "plain text does not produce" in r for r in cmp.reasons)


def test_permuted_vocabulary_is_remappable_with_a_correct_table(tmp_path, base):
    def permute(spec):
        vocab = spec["model"]["vocab"]
        ordinary = [t for t in vocab if t not in ("<s>", "</s>")]
        ids = [vocab[t] for t in ordinary]
        random.Random(0).shuffle(ids)
        for t, i in zip(ordinary, ids):
            vocab[t] = i

    draft_dir = save(tmp_path / "b", variant(base, permute))
    cmp = check(save(tmp_path / "a", base), draft_dir, probe_text=PROBE)
    assert cmp.verdict == REMAPPABLE
    assert cmp.probe["identical_fraction"] == 1.0  # through the table
    target_tok = Tokenizer.from_str(json.dumps(base))
    draft_tok = Tokenizer.from_file(f"{draft_dir}/tokenizer.json")
    text = "the quick fox verifies tokens"
    assert draft_tok.encode(text).ids != target_tok.encode(text).ids
    assert [cmp.draft_to_target[i] for i in draft_tok.encode(text).ids] == \
        target_tok.encode(text).ids


def test_different_merges_draft_through_text(tmp_path, base, capsys):
    a = save(tmp_path / "a", base)
    b = save(tmp_path / "b", train(OTHER_CORPUS))
    cmp = check(a, b, probe_text=PROBE)
    assert cmp.verdict == TEXT_LEVEL and cmp.shared_bytes > 0
    assert main(["check", a, b]) == 0  # usable, exactly, through text
    out = capsys.readouterr().out
    assert "verdict: text-level" in out and "different merge lists" in out


def test_shared_strings_are_counted_by_their_bytes():
    """A byte-level BPE vocabulary and a SentencePiece one that differ only in how they spell
    a leading space ('Ġ' vs '▁') and raw bytes share every string."""
    from specpair.core.text import NORMAL
    from specpair.tokenizers.info import TokenizerInfo
    from specpair.tokenizers.shared import shared_strings

    def info(model, tokens):
        return TokenizerInfo(source="x", format="tokenizer.json", model=model, pre="",
                             tokens=tokens, types=[NORMAL] * len(tokens), merges=[],
                             special={}, add_bos=False, add_eos=False, chat_template=None)

    bpe = info("gpt2", ["Ġthe", "cat", "Ġsat", "Ċ"])
    spm = info("llama", ["\u2581the", "cat", "\u2581sat", "<0x0A>"])
    assert set(bpe.byte_strings) == set(spm.byte_strings) == {b" the", b"cat", b" sat", b"\n"}
    draft_ids, target_ids = shared_strings(bpe, spm)
    assert draft_ids.tolist() == target_ids.tolist() == [0, 1, 2, 3]


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.gguf"), str(tmp_path)]) == 2
    assert "specpair: error:" in capsys.readouterr().err


# --- the real GGUF models -------------------------------------------------------------------


@pytest.mark.real
def test_qwen_pair_is_identical(target_path, draft_path, capsys):
    assert main(["check", target_path, draft_path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == IDENTICAL
    assert report["probe"]["identical_fraction"] == 1.0
    assert report["target"]["vocab_size"] == 151665 and report["target"]["padding_ids"] == 271
    assert report["target"]["special"]["eos"]["text"] == "<|im_end|>"


@pytest.mark.real
@pytest.mark.parametrize("order", ["gemma-first", "qwen-first"])
def test_gemma_against_qwen_drafts_through_text(target_path, gemma_path, order, capsys):
    pair = [gemma_path, target_path] if order == "gemma-first" else [target_path, gemma_path]
    assert main(["check", *pair, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "text-level"
    assert any("different tokenizer models" in r for r in report["reasons"])
    # compared as bytes, far more strings are shared than compared as spellings (24,520)
    assert report["shared_byte_strings"] > 50_000


QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@pytest.mark.real
def test_gguf_against_tokenizer_json_of_the_same_tokenizer_is_identical(target_path, tmp_path):
    """Build Qwen2.5's tokenizer.json from the GGUF's vocabulary and merges (as HF ships it) and
    check the two formats against each other, probe included (llama.cpp vs HF tokenizers)."""
    from specpair.tokenizers.info import from_gguf

    info = from_gguf(target_path)
    n_normal = info.types.index(3)
    vocab = {t: i for i, t in enumerate(info.tokens[:n_normal])}
    merges = [tuple(m.split(" ", 1)) for m in info.merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for i in range(n_normal, info.n_real):  # added tokens, in id order
        token = AddedToken(info.tokens[i], special=info.types[i] == 3, normalized=False)
        (tok.add_special_tokens if info.types[i] == 3 else tok.add_tokens)([token])
    folder = tmp_path / "qwen-hf"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "add_bos_token": False}))
    assert from_hf(folder).n_real == info.n_real
    cmp = check(target_path, str(folder))
    assert cmp.verdict == IDENTICAL, cmp.reasons
    assert cmp.probe["identical_fraction"] == 1.0
