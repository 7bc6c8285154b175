"""A multi-turn chat session with history, a system prompt and streamed replies."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from threading import Thread

from tunesmith.data.tokenize import prompt_ids
from tunesmith.generate.generate import GenerationSettings, build_messages, cut_at_stop, generation_kwargs

COMMANDS_HELP = "/reset clears the history, /exit quits"


class ChatSession:
    """Holds the conversation; `send` streams the reply token by token and appends it to the history."""

    def __init__(
        self,
        model,
        tokenizer,
        system: str | None = None,
        settings: GenerationSettings | None = None,
        tools: list[dict] | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.system = system
        self.tools = tools  # function schemas the chat template renders into every prompt, as in training
        self.settings = settings or GenerationSettings(temperature=0.7, top_p=0.9)
        self.history: list[dict] = []

    def reset(self) -> None:
        self.history = []

    def messages(self) -> list[dict]:
        return build_messages(list(self.history), self.system) if self.history else []

    def stream(self, text: str) -> Iterable[str]:
        """Yield the reply's text pieces as they are generated; the full reply joins the history at the end."""
        import torch
        from transformers import TextIteratorStreamer, set_seed

        self.history.append({"role": "user", "content": text})
        ids = torch.tensor(
            [prompt_ids(self.tokenizer, self.messages(), self.tools)], device=next(self.model.parameters()).device
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = generation_kwargs(
            self.model, self.tokenizer, GenerationSettings(**{**vars(self.settings), "num_samples": 1})
        )
        if self.settings.seed is not None:
            set_seed(self.settings.seed)
        thread = Thread(target=self._generate, args=(ids, streamer, kwargs), daemon=True)
        thread.start()
        pieces: list[str] = []
        for piece in streamer:
            pieces.append(piece)
            yield piece
        thread.join()
        reply = cut_at_stop("".join(pieces), self.settings.stop).strip()
        self.history.append({"role": "assistant", "content": reply})

    def _generate(self, ids, streamer, kwargs) -> None:
        import torch

        with torch.no_grad():
            self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer, **kwargs)

    def send(self, text: str, on_piece: Callable[[str], None] | None = None) -> str:
        """Send one user turn; returns the reply (calling `on_piece` for each streamed piece)."""
        for piece in self.stream(text):
            if on_piece:
                on_piece(piece)
        return self.history[-1]["content"]


def chat_loop(
    session: ChatSession,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    write_piece: Callable[[str], None] | None = None,
) -> int:
    """The terminal loop: read a line, handle /reset and /exit, stream the reply. Returns the turns taken."""
    turns = 0
    write(f"chatting ({COMMANDS_HELP})")
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            break
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            session.reset()
            write("(history cleared)")
        elif line:
            reply = session.send(line, on_piece=write_piece)
            write("" if write_piece else f"assistant> {reply}")
            turns += 1
    return turns
