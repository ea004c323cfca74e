"""maomao: run a research collaboration's periodic data collectors."""

__version__ = "0.1.0"
