"""pad: Pre-train, Align, and Disentangle for sequential recommendation."""

__version__ = "0.1.0"
