"""`tunesmith plan`: memory by part and time per step of a run, from its config and data, before any weight loads."""
