"""specpair: speculative decoding with any draft/target pair whose tokenizers line up."""

__version__ = "0.1.0"
