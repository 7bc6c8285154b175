"""Scoring stage."""
