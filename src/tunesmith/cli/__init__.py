"""Command line: a dispatch table in main.py, one small module per command."""
