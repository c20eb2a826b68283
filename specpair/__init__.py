"""specpair: speculative decoding with any draft/target pair, exact and measured."""

__version__ = "0.1.0"
