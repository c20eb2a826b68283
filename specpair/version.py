"""The version, in the lowest layer: cost keys and reports name it."""

__version__ = "0.2.0"
