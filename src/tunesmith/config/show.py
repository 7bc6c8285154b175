"""Render a resolved config with every default and its help text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tunesmith.config.schema import Config


def render_config(config: Config) -> str:
    """YAML-like text of every section and field, with the field's description as a comment."""
    lines: list[str] = []
    _render_model(config, 0, lines)
    return "\n".join(lines)


def _render_model(model: BaseModel, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        help_text = field.description or ""
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{'  # ' + help_text if help_text else ''}")
            _render_model(value, indent + 1, lines)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines.append(f"{pad}{name}:  # {help_text}")
            for item in value:
                sub: list[str] = []
                _render_model(item, indent + 2, sub)
                first = sub[0].lstrip()
                lines.append(f"{pad}  - {first}")
                lines.extend(sub[1:])
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}  # {help_text}")


def _scalar(value: Any) -> str:
    import json

    if value is None:
        return "null"
    if isinstance(value, str):
        return (
            json.dumps(value)
            if (not value or any(c in value for c in ":#{}[],'\"") or value.strip() != value)
            else value
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)
