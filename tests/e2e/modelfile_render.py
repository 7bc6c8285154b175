"""Render a tunesmith Modelfile as Ollama would for a chat: its TEMPLATE (the Go-template subset export writes:
range .Messages, if/else if eq .Role, .Content, quoted literals), SYSTEM injected as the first message, and
its stop parameters. Tests use it to run llama.cpp through the Modelfile's own template text."""

from __future__ import annotations

import re

ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)


def parse_modelfile(text: str) -> dict:
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    system = re.search(r'SYSTEM """(.*?)"""', text, re.S)
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)
    return {"template": template, "system": system.group(1) if system else None, "stop": stops}


def render(template: str, messages: list[dict], system: str | None = None) -> str:
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    pieces = ACTION.split(template)  # even: literal text, odd: actions
    head, body, tail = _split_range(pieces)
    return _literal(head) + "".join(_message(body, m) for m in messages) + _literal(tail)


def _split_range(pieces: list[str]):
    start = pieces.index("range .Messages")
    depth, end = 0, None
    for i in range(start + 2, len(pieces), 2):
        action = pieces[i]
        depth += action.startswith(("if ", "range ")) - (action == "end")
        if depth < 0:
            end = i
            break
    return pieces[:start], pieces[start + 1 : end], pieces[end + 1 :]


def _message(body: list[str], message: dict) -> str:
    out, active, taken = [], False, False
    for i, piece in enumerate(body):
        if i % 2 == 0:
            out.append(piece if active else "")
            continue
        role = re.fullmatch(r'(?:else )?if eq \.Role "(\w+)"', piece)
        if role:
            active = not taken and role.group(1) == message["role"]
            taken = taken or active
        elif piece == "end":
            active = False
        elif piece == ".Content":
            out.append(message["content"] if active else "")
        elif piece == '"{{"':
            out.append("{{" if active else "")
        else:
            raise ValueError(f"unsupported template action: {piece}")
    return "".join(out)


def _literal(pieces: list[str]) -> str:
    return "".join(p if i % 2 == 0 else "{{" if p == '"{{"' else _bad(p) for i, p in enumerate(pieces))


def _bad(action: str) -> str:
    raise ValueError(f"unsupported template action outside the message loop: {action}")
