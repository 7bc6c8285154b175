"""Run directories for export tests, built directly: a base model + a LoRA adapter with random non-zero B."""

from __future__ import annotations

import json
from pathlib import Path

TEST_ROWS = [
    [{"role": "user", "content": "How do I reset my password?"}, {"role": "assistant", "content": "Open settings."}],
    [{"role": "user", "content": "Play some jazz music."}, {"role": "assistant", "content": "Playing jazz."}],
    [{"role": "user", "content": "What is the weather in Paris tomorrow?"}, {"role": "assistant", "content": "Sunny."}],
    [{"role": "user", "content": "Set an alarm for 6:30 am."}, {"role": "assistant", "content": "Done."}],
]


def make_lora_run(
    base: str | Path,
    root: Path,
    chat_template: str = "auto",
    system_prompt: str | None = None,
    seed: int = 0,
    target_modules: list[str] | str = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj"),
) -> Path:
    """A finished LoRA run on `base` (folder or .gguf) with a random adapter, config, manifest and test split."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.config import load_config
    from tunesmith.config.load import save_config
    from tunesmith.model.load import load_model, load_tokenizer
    from tunesmith.run_dir import RunDir, write_jsonl

    run = RunDir.of(root)
    root.mkdir(parents=True, exist_ok=True)
    config = load_config(
        data={
            "run": {"name": root.name, "output_dir": str(root.parent), "seed": seed},
            "model": {"name_or_path": str(base), "chat_template": chat_template},
            "data": {"system_prompt": system_prompt},
            "export": {"gguf": ["f16"], "verify_prompts": 3, "verify_tokens": 12},
        }
    )
    save_config(config, run.config_file)
    run.manifest.write_text(json.dumps({"base_model": str(base)}))
    tokenizer = load_tokenizer(str(base), chat_template=chat_template)
    torch.manual_seed(seed)
    model = get_peft_model(
        load_model(str(base), dtype=torch.float32),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    model.save_pretrained(run.final)
    tokenizer.save_pretrained(run.final)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    write_jsonl(run.split_file("test"), [{"messages": system + row, "meta": {}} for row in TEST_ROWS])
    return root
