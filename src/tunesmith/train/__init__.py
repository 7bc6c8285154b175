"""Training: SFT (full / LoRA / QLoRA) and GRPO, writing a run directory."""
