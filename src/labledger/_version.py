"""The version of this code, importable from any layer without the package root."""

__version__ = "0.1.0"
