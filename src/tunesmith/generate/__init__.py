"""Generate stage."""
