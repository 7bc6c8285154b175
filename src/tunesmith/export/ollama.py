"""Ollama Modelfile: FROM, a Go TEMPLATE translated from the run's jinja chat template, stops, SYSTEM, sampling.

The translation renders the jinja template on marker messages and cuts out what it writes around each role's
content (a per-role prefix and suffix, a preamble and the generation prompt). The Go template then rebuilds the
same text from Ollama's .Messages; it is checked against jinja on a multi-turn conversation, and a template
whose turns depend on their position (dates, moving the system prompt) is flagged as approximated. A default
system turn the template writes only when the conversation has none (SmolLM2's "You are a helpful AI
assistant named SmolLM...") becomes the Modelfile's SYSTEM, which Ollama injects under the same condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.errors import ExportError

SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1}
MARK = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "assistant": "\x01ASSISTANT\x01"}


@dataclass
class TurnFormat:
    """What the template writes around each message, recovered by rendering it."""

    preamble: str
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str
    family: str
    exact: bool = True
    notes: list[str] = field(default_factory=list)
    default_system: str | None = None  # the system text the template writes when the conversation has none

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        body = "".join(self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in messages)
        return self.preamble + body + (self.generation if add_generation_prompt else "")


def template_family(template: str) -> str:
    """chatml, llama3, simple or other, from the jinja text."""
    if "<|im_start|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    if "'User: '" in template and "'Assistant:" in template:
        return "simple"
    return "other"


def _render(tokenizer, messages: list[dict], gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def _cut(text: str, head: str, what: str) -> str:
    if not text.startswith(head):
        raise ValueError(f"{what}: '{text}' does not start with '{head}'")
    return text[len(head) :]


def turn_format(tokenizer) -> TurnFormat:
    """Recover the template's turn format; `exact` says whether it reproduces jinja on a check conversation."""
    family = template_family(tokenizer.chat_template or "")
    s, u, a = (MARK[r] for r in ("system", "user", "assistant"))
    msg = lambda role, text: {"role": role, "content": text}  # noqa: E731
    try:
        only_user = _render(tokenizer, [msg("user", u)], False)
        user_gen = _render(tokenizer, [msg("user", u)], True)
        pair = _render(tokenizer, [msg("user", u), msg("assistant", a)], False)
        with_system = _render(tokenizer, [msg("system", s), msg("user", u)], False)
        head, user_suffix = only_user.split(u)
        generation = _cut(user_gen, only_user, "generation prompt")
        between, assistant_suffix = _cut(pair, only_user, "assistant turn").split(a)
        system_part, rest = with_system.split(s)
        fmt = TurnFormat(
            preamble="",
            prefix={"user": head, "assistant": between},
            suffix={"user": user_suffix, "assistant": assistant_suffix},
            generation=generation,
            family=family,
        )
        _split_preamble(fmt, tokenizer, system_part, rest, head)
    except Exception as exc:  # noqa: BLE001 - any jinja failure means: cannot derive exactly
        return _fallback_format(family, f"could not derive the turn format from the template ({exc})")
    _check(fmt, tokenizer)
    return fmt


def _split_preamble(fmt: TurnFormat, tokenizer, system_part: str, rest: str, user_head: str) -> None:
    """Separate text written once at the start (e.g. BOS) from the user prefix, and find the system turn."""
    two_turns = _render(
        tokenizer,
        [
            {"role": "user", "content": MARK["user"]},
            {"role": "assistant", "content": MARK["assistant"]},
            {"role": "user", "content": MARK["user"]},
        ],
        False,
    )
    later_user = two_turns.split(MARK["assistant"] + fmt.suffix["assistant"], 1)[1].split(MARK["user"])[0]
    if not user_head.endswith(later_user):
        raise ValueError("the user prefix differs between the first and later turns")
    fmt.preamble = user_head[: len(user_head) - len(later_user)]
    fmt.prefix["user"] = later_user
    before_user = rest.split(MARK["user"])[0]
    if not before_user.endswith(later_user):
        raise ValueError("the user prefix differs after a system turn")
    fmt.suffix["system"] = before_user[: len(before_user) - len(later_user)]
    if _default_system_turn(fmt, system_part):
        return
    fmt.prefix["system"] = _cut(system_part, fmt.preamble, "system turn")


def _default_system_turn(fmt: TurnFormat, system_part: str) -> bool:
    """A 'preamble' that is a whole system turn (prefix + text + suffix) the template writes only when no system
    message is given: keep its text as the default system prompt instead."""
    prefix, suffix, preamble = system_part, fmt.suffix["system"], fmt.preamble
    if not (prefix and preamble.startswith(prefix) and preamble.endswith(suffix)):
        return False
    default = preamble[len(prefix) : len(preamble) - len(suffix)]
    if len(preamble) < len(prefix) + len(suffix) or not default:  # Ollama does not inject an empty SYSTEM
        return False
    fmt.default_system = default
    fmt.preamble, fmt.prefix["system"] = "", prefix
    return True


def _check(fmt: TurnFormat, tokenizer) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Two plus two?"},
    ]
    try:
        expected = _render(tokenizer, conversation, True)
    except Exception:  # noqa: BLE001 - templates that reject a system turn
        conversation = conversation[1:]
        expected = _render(tokenizer, conversation, True)
        fmt.notes.append("the template rejects system messages; the SYSTEM turn format is a guess")
    exact = fmt.render(conversation) == expected
    if exact and fmt.default_system is not None:  # the default system turn must appear exactly when none is given
        exact = fmt.render(conversation[1:]) == _render(tokenizer, conversation[1:], True)
    if not exact:
        fmt.exact = False
        fmt.notes.append("the template renders turns differently depending on their position; TEMPLATE is approximated")


def _fallback_format(family: str, note: str) -> TurnFormat:
    """The family's standard turn format (ChatML when the family is unknown), marked as approximated."""
    if family == "llama3":
        prefix = {r: f"<|start_header_id|>{r}<|end_header_id|>\n\n" for r in ("system", "user", "assistant")}
        suffix = {r: "<|eot_id|>" for r in prefix}
        generation, name = prefix["assistant"], "Llama-3"
    else:
        prefix = {r: f"<|im_start|>{r}\n" for r in ("system", "user", "assistant")}
        suffix = {r: "<|im_end|>\n" for r in prefix}
        generation, name = prefix["assistant"], "ChatML"
    return TurnFormat(
        "", prefix, suffix, generation, family, exact=False, notes=[note, f"TEMPLATE is approximated as {name}"]
    )


def _go_literal(text: str) -> str:
    """Template text as Go template literal text ('{{' must go through an action)."""
    if '"""' in text:
        raise ExportError('the chat template contains """, which a Modelfile TEMPLATE block cannot hold')
    return text.replace("{{", '{{ "{{" }}')


def go_template(fmt: TurnFormat, drop_bos: str | None = None) -> str:
    """The Go template over .Messages that reproduces `fmt` (Ollama injects SYSTEM as a system message)."""
    preamble = fmt.preamble
    if drop_bos and preamble.startswith(drop_bos):
        preamble = preamble[len(drop_bos) :]  # llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token)
    parts = [_go_literal(preamble), "{{ range .Messages }}"]
    for i, role in enumerate(("system", "user", "assistant")):
        parts.append(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}')
        parts.append(_go_literal(fmt.prefix[role]) + "{{ .Content }}" + _go_literal(fmt.suffix[role]))
    parts.append("{{ end }}{{ end }}" + _go_literal(fmt.generation))
    return "".join(parts)


def stop_tokens(tokenizer, fmt: TurnFormat) -> list[str]:
    """Every end-of-turn marker: the text closing an assistant turn, special tokens in it, and EOS."""
    vocab = tokenizer.get_vocab()
    special = [t for t in tokenizer.all_special_tokens if t in vocab]
    stops = [t for t in special if t and t in fmt.suffix["assistant"]]
    closing = fmt.suffix["assistant"].strip()
    if closing and closing not in stops:
        stops.insert(0, closing)  # the text that ends an assistant turn, e.g. <|eot_id|>
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    if fmt.family == "chatml" and "<|im_start|>" in vocab:
        stops.append("<|im_start|>")  # a model that skips <|im_end|> must not write the next turn
    return list(dict.fromkeys(stops))


def modelfile(
    gguf_name: str, tokenizer, system_prompt: str | None, num_ctx: int, add_bos: bool, adapter_name: str | None = None
) -> tuple[str, TurnFormat]:
    """The Modelfile text for `gguf_name` (a path relative to the Modelfile, plus a LoRA GGUF applied on top
    when `adapter_name` is given) and the turn format it used."""
    fmt = turn_format(tokenizer)
    template = go_template(fmt, drop_bos=tokenizer.bos_token if add_bos else None)
    lines = [f"FROM ./{gguf_name}"] + ([f"ADAPTER ./{adapter_name}"] if adapter_name else []) + [""]
    lines += [
        _comment(
            f"chat template family: {fmt.family}"
            + ("" if fmt.exact else " (APPROXIMATED: " + "; ".join(fmt.notes) + ")")
        )
    ]
    lines += [f'TEMPLATE """{template}"""', ""]
    system = system_prompt or fmt.default_system  # Ollama injects SYSTEM when a chat has no system message
    if system:
        lines += [f'SYSTEM """{_go_literal(system)}"""', ""]
    lines += [f'PARAMETER stop "{stop}"' for stop in stop_tokens(tokenizer, fmt)]
    lines += [f"PARAMETER {name} {value}" for name, value in SAMPLING.items()]
    lines += [f"PARAMETER num_ctx {num_ctx}"]
    return "\n".join(lines) + "\n", fmt


def _comment(text: str) -> str:
    """One Modelfile comment line: a newline inside it would start a line Ollama parses as an instruction."""
    return "# " + text.replace("\r", "\\r").replace("\n", "\\n")


def ollama_commands(name: str, modelfile_path) -> list[str]:
    return [f"ollama create {name} -f {modelfile_path}", f"ollama run {name}"]
