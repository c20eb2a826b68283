"""Defects found by reading the core, each with a test that failed before its fix: a draft
that writes invalid UTF-8 mid-proposal, a draft whose context is smaller than the target's,
`--seed` with auto at T > 0, a malformed --from-json, and the llama.cpp offload option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specpair.cli import main
from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.drafters import ModelDrafter
from specpair.drafters.crossvocab import TextDrafter
from specpair.schedule import decode_steps

from .conftest import need
from .test_crossvocab import SegBackend
from .toy import ToyBackend, random_table


def test_a_draft_writing_invalid_utf8_mid_proposal_proposes_nothing():
    """The draft's pieces are bytes: a lone lead byte followed by ASCII is invalid UTF-8 that
    trimming the tail does not fix. It used to raise UnicodeDecodeError out of the loop."""
    target = SegBackend(["a", "b", "c"], np.zeros((3, 3)))
    draft_table = np.full((4, 4), -5.0)
    draft_table[:, 3] = 5.0  # always the bad piece, then "a" after it: b"\xe2a"
    draft_table[3, 3], draft_table[3, 0] = -5.0, 5.0
    draft = SegBackend(["a", "b", "c", b"\xe2"], draft_table)
    drafter = TextDrafter(draft, target)
    plain = [t for s in decode_steps(SegBackend(["a", "b", "c"], np.zeros((3, 3))), None,
                                     [0, 1], rng=np.random.default_rng(0),
                                     config=DecodeConfig(max_tokens=6)) for t in s.tokens]
    out = [t for s in decode_steps(target, drafter, [0, 1], rng=np.random.default_rng(0),
                                   config=DecodeConfig(max_tokens=6, draft_tokens=3))
           for t in s.tokens]
    assert out == plain


def test_a_draft_with_a_smaller_context_stops_drafting_and_decoding_goes_on():
    table = random_table(6, seed=2)
    target = ToyBackend(table, n_ctx=64)
    small = ModelDrafter(ToyBackend(table, n_ctx=12), sampling=SamplingConfig(),
                         rng=np.random.default_rng(0))
    plain = [t for s in decode_steps(ToyBackend(table, n_ctx=64), None, [1, 2, 3],
                                     rng=np.random.default_rng(0),
                                     config=DecodeConfig(max_tokens=40)) for t in s.tokens]
    steps = list(decode_steps(target, small, [1, 2, 3], rng=np.random.default_rng(0),
                              config=DecodeConfig(max_tokens=40, draft_tokens=4)))
    assert [t for s in steps for t in s.tokens] == plain and len(plain) == 40
    assert sum(s.n_drafted for s in steps) > 0  # it drafted while it fitted


def test_seed_gives_the_same_output_with_auto_whatever_it_chose():
    """auto's choices depend on timings; with lookups (proposals without q) the output does
    not: position j's token is drawn with position j's uniform whatever was drafted."""
    import specpair

    table = random_table(26, seed=4, sharpness=2.0)
    outs = []
    for _ in range(2):
        with specpair.load(ToyBackend(table), draft="auto", fresh=True) as pair:
            outs.append(pair.generate("abcabcabcabc", max_tokens=30, temperature=0.8,
                                      seed=7).tokens)
    plain = specpair.load(ToyBackend(table), draft="none").generate(
        "abcabcabcabc", max_tokens=30, temperature=0.8, seed=7).tokens
    assert outs[0] == outs[1] == plain


@pytest.mark.parametrize("content", ["{not json", json.dumps({"verify_seconds": "x"}),
                                     json.dumps({"verify_seconds": [1, 2],
                                                 "calibrations": [{"drafter": "d"}]}),
                                     json.dumps([1, 2, 3])])
def test_what_if_from_a_malformed_report_is_a_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "advise.json"
    path.write_text(content)
    assert main(["advise", "--what-if", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("specpair: error: ") and "--from-json" in err[0]


@pytest.mark.engine
def test_gpu_layers_reach_llama_cpp_and_a_bad_value_is_a_one_line_error(capsys, monkeypatch):
    need("llama_cpp", "models")
    from specpair.backends import ALL_LAYERS, llamacpp, parse_gpu_layers

    assert parse_gpu_layers("all") == ALL_LAYERS and parse_gpu_layers("12") == 12
    assert main(["generate", "x", "--gpu-layers", "lots"]) == 2
    err = capsys.readouterr().err
    assert "--gpu-layers must be a count of layers or 'all'" in err
    # on a build without a GPU backend, asking for layers on a GPU says what to reinstall
    monkeypatch.setattr(llamacpp, "supports_gpu_offload", lambda: False)
    assert llamacpp.gpu_layers_for(None) == 0
    with pytest.raises(specpair_error(), match="CMAKE_ARGS"):
        llamacpp.gpu_layers_for(4)
    monkeypatch.setattr(llamacpp, "supports_gpu_offload", lambda: True)
    assert llamacpp.gpu_layers_for(None) == ALL_LAYERS  # all, where the build can offload
    # llama.cpp's load log says where each layer went
    lines = ["load_tensors: layer   0 assigned to device CUDA0, is_swa = 0",
             "load_tensors: layer   1 assigned to device CPU, is_swa = 0",
             "llama_model_load_from_file_impl: using device CUDA0 (NVIDIA H200) - 139000 MiB"]
    assert llamacpp.placement(lines) == (1, 2, "NVIDIA H200")
    # a split model is neither device: its costs are kept apart, and auto still detects a busy
    # CPU under it (a split model's CPU layers slow down when another process takes the cores)
    split = llamacpp.device_label("NVIDIA H200", 1, 2)
    assert split != "NVIDIA H200" and "CPU" in split and "1/2 layers" in split
    assert llamacpp.device_label("NVIDIA H200", 2, 2) == "NVIDIA H200"
    assert llamacpp.device_label(None, 0, 2).startswith("CPU")


def specpair_error():
    from specpair.errors import SpecpairError

    return SpecpairError


def test_a_wrapper_passes_every_hook_to_the_drafter_inside():
    """--adaptive with --draft-system: the system-prompt wrapper used to hide `observe`, so the
    adaptive drafter inside it never learned a cost (the loop found hooks with getattr)."""
    from specpair.auto.adaptive import AdaptiveDrafter, Candidate
    from specpair.auto.curve import CostCurve
    from specpair.drafters import SystemPromptDrafter

    table = random_table(8, seed=1)
    model = ModelDrafter(ToyBackend(table), sampling=SamplingConfig(),
                         rng=np.random.default_rng(0))
    adaptive = AdaptiveDrafter([Candidate.with_prior(model, free=False, prior=[0.9],
                                                     max_k=4, seconds_per_token=1e-6)],
                               CostCurve([1.0, 1.0, 1.0, 1.0, 1.0]), max_k=4)
    wrapped = SystemPromptDrafter(adaptive, target_prompt_len=2, draft_prompt=[5, 6, 7])
    for _ in decode_steps(ToyBackend(table), wrapped, [1, 2], rng=np.random.default_rng(0),
                          config=DecodeConfig(max_tokens=30, draft_tokens=4)):
        pass
    assert sum(adaptive.curve.counts) > 0  # observe reached it: the costs were learned
    assert adaptive.candidates[0].measured_tokens > 0
    assert adaptive.wall_seconds > 0  # begin and end reached it too
