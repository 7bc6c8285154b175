"""Read a YAML/JSON config strictly: every problem at once, each with its key path, line and fix."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> Config:
    """Load a config file (or a dict), apply `key.path=value` overrides, and validate strictly."""
    raw: dict[str, Any] = {} if data is None else dict(data)
    lines: dict[tuple, int] = {}
    source = "<config>"
    if path is not None:
        source = str(path)
        raw, lines = _read_file(Path(path))
    for item in overrides or []:
        _apply_override(raw, item)
    return validate_config(raw, source=source, lines=lines)


def validate_config(raw: dict, source: str = "<config>", lines: dict[tuple, int] | None = None) -> Config:
    """Validate a plain dict against the schema, raising one ConfigError that lists every problem."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = lines or {}
        errors = sorted(exc.errors(), key=lambda e: _nearest_line(tuple(e["loc"]) + ("",), lines) or 0)
        problems = [_describe(err, lines, source) for err in errors]
        raise ConfigError(
            f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)} in the config",
            problems,
            hint="`tunesmith config show` lists every key with its default and help",
        ) from None


def _read_file(path: Path) -> tuple[dict, dict[tuple, int]]:
    if not path.exists():
        raise ConfigError(f"{path}: no such config file", hint="check the path, or write one from examples/")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(f"{path}: not UTF-8 text ({where})", hint="save the config as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    try:
        if path.suffix == ".json":
            return _require_mapping(json.loads(text), path), {}
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    return _require_mapping(data or {}, path), _line_map(node)


def _require_mapping(data: Any, path: Path) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config must be a mapping of sections (run, model, data, ...), got {type(data).__name__}"
        )
    return data


def _line_map(node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line number."""
    out: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            out.update(_line_map(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[(*prefix, i)] = value.start_mark.line + 1
            out.update(_line_map(value, (*prefix, i)))
    return out


def _describe(err: dict, lines: dict[tuple, int], source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
    key = ".".join(str(p) for p in loc) or "(top level)"
    line = lines.get(loc) or _nearest_line(loc, lines)
    where = f"line {line}: " if line else ""
    if err["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'"
        suggestion = _did_you_mean(loc)
        if suggestion:
            message += f"; did you mean '{suggestion}'?"
        else:
            message += f"; valid keys: {', '.join(_fields_at(loc[:-1]))}"
    elif err["type"] == "value_error":
        message = str(err["msg"]).removeprefix("Value error, ")
    else:
        message = f"{err['msg']} (got {_shown(err.get('input'))})"
    return f"{where}{key}: {message}"


def _shown(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, cut short: a pasted document or a deep list must not flood the terminal."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _nearest_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for cut in range(len(loc) - 1, 0, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the fields at a key path (None where the path leaves the schema)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


# Names other tools use (transformers / TRL / peft / Unsloth scripts), mapped to the key that does the same here.
FOREIGN_KEYS = {
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "per_device_eval_batch_size": "train.eval_batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "lr_scheduler_type": "train.lr_scheduler",
    "optim": "train.optimizer",
    "gradient_checkpointing": "train.activation_checkpointing",
    "max_seq_length": "data.max_length",
    "model_name": "model.name_or_path",
    "model_name_or_path": "model.name_or_path",
    "base_model": "model.name_or_path",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "dataset_name": "data.sources.0.path",
    "dataset": "data.sources.0.path",
    "val_split": "data.split.val",
    "system_prompt": "data.system_prompt",
    "load_in_4bit": "train.mode (qlora)",
    "bnb_4bit_quant_type": "quantization.quant_type",
    "bnb_4bit_use_double_quant": "quantization.double_quant",
    "bnb_4bit_compute_dtype": "quantization.compute_dtype",
}


def _did_you_mean(loc: tuple) -> str | None:
    """Another tool's name for a setting ('lora_r' -> 'lora.r'), a key of the same section that is spelt alike,
    else the same setting in another section ('learning_rate' at the top -> 'train.learning_rate')."""
    if str(loc[-1]) in FOREIGN_KEYS:
        return FOREIGN_KEYS[str(loc[-1])]
    section = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    same_name = [
        p for p in _key_paths(Config) if p.rsplit(".", 1)[-1] == str(loc[-1]) and p.rsplit(".", 1)[0] != section
    ]
    if same_name:  # the exact key of another section beats a look-alike here ('seed' in train: run.seed, not deepspeed)
        return min(same_name, key=len)
    match = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1, cutoff=0.6)
    if match:
        return match[0]
    return _elsewhere(str(loc[-1]), ".".join(str(p) for p in loc[:-1] if not isinstance(p, int)))


def _elsewhere(name: str, section: str) -> str | None:
    """Where a key of another section lives: the same name there, or `<section>_<key>` -> `<section>.<key>`."""
    paths = _key_paths(Config)
    same = [p for p in paths if p.rsplit(".", 1)[-1] == name and p.rsplit(".", 1)[0] != section]
    if same:
        return min(same, key=len)
    head, _, rest = name.partition("_")
    if rest and f"{head}.{rest}" in paths:
        return f"{head}.{rest}"
    close = difflib.get_close_matches(name, [p.rsplit(".", 1)[-1] for p in paths], n=1, cutoff=0.8)
    return next((p for p in paths if close and p.rsplit(".", 1)[-1] == close[0]), None)


def _key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key path of the schema through nested sections ('train.learning_rate'); lists are not entered."""
    paths = []
    for name, field in model.model_fields.items():
        inner = (
            field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        )
        paths += _key_paths(inner, f"{prefix}{name}.") if inner else [f"{prefix}{name}"]
    return paths


def _apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b.c=value` override; the value is parsed as YAML so the schema can type it."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.learning_rate=1e-4")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    target: Any = raw
    for i, part in enumerate(parts[:-1]):
        target = _step(target, part, parts[: i + 1], item)
    last = parts[-1]
    if isinstance(target, list):
        target[_index(last, target, item)] = value
    else:
        target[last] = value


def _step(target: Any, part: str, path: list[str], item: str) -> Any:
    if isinstance(target, list):
        return target[_index(part, target, item)]
    if not isinstance(target, dict):
        raise ConfigError(f"--set {item!r}: '{'.'.join(path[:-1])}' is not a section")
    if part not in target or target[part] is None:
        target[part] = {}
    return target[part]


def _index(part: str, target: list, item: str) -> int:
    if not part.isdigit() or int(part) >= len(target):
        raise ConfigError(f"--set {item!r}: '{part}' is not an index of a list with {len(target)} items")
    return int(part)


def config_to_dict(config: Config) -> dict:
    """The resolved config as plain data (what a run directory saves as config.yaml)."""
    return config.model_dump(mode="json")


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True), encoding="utf-8")
