"""Tokenizers, read without weights (from a GGUF header or HF tokenizer files), compared, and
what two of them share.

info.py     TokenizerInfo: a vocabulary, its token types, merges, special tokens, settings
compare.py  the comparison behind `specpair.check` and its verdict (identical ... incompatible)
shared.py   the one definition of the token strings two vocabularies share
"""
