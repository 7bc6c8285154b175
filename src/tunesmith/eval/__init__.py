"""Eval stage."""
