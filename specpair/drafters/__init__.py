"""The drafters, one file each, all implementing the core's `Drafter` protocol
(core/drafter.py): propose(context, k) -> Draft(tokens, q | None), with declared hooks.

model.py          a small language model whose tokenizer lines up with the target's
ngram.py          prompt lookup: what followed the longest recent n-gram match
copy.py           long copies: a repeat of a dozen tokens or more, followed up to K = 64
suffix.py         suffix decoding: per-request and global suffix trees (suffix_tree.py)
remapped.py       a model draft whose vocabulary has the target's strings under other ids
crossvocab.py     a model draft with another tokenizer, through text (and TLI for sampling)
system_prompt.py  a model draft that reads a system prompt of its own (specpair steer)
pairing.py        which of these a checked pair drafts with
"""

from ..core.drafter import Draft, Drafter, DrafterWrapper, fit_to_vocab, restricted
from .model import DEFAULT_DRAFT_P_MIN, ModelDrafter
from .ngram import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN, NgramDrafter
from .remapped import RemappedDrafter
from .system_prompt import SystemPromptDrafter

__all__ = ["DEFAULT_DRAFT_P_MIN", "DEFAULT_NGRAM_MAX", "DEFAULT_NGRAM_MIN", "Draft", "Drafter",
           "DrafterWrapper", "ModelDrafter", "NgramDrafter", "RemappedDrafter",
           "SystemPromptDrafter", "fit_to_vocab", "restricted"]
