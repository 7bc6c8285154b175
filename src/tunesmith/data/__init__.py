"""Data: sources -> conversations -> checks, stats, cleaning, splits -> ids + loss mask."""
