"""Grounded, offline question answering over local documents with verified citations."""

__version__ = "0.1.0"
