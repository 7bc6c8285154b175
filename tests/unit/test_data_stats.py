"""`data stats` numbers on constructed data with known answers, its speed, and `data preview` loss marking."""

from __future__ import annotations

import json
import random
import time

from tunesmith.cli.main import main
from tunesmith.data.stats import cut_shares, packing_fill, recommend_max_length, stats_target


def test_recommended_max_length_known_answers():
    lengths = [100] * 985 + [1000] * 15
    assert recommend_max_length(lengths, 0.99) == 1024  # the 990th shortest is 1000 tokens
    assert recommend_max_length(lengths, 0.98) == 128  # the 980th is 100 tokens
    assert recommend_max_length([64] * 10) == 64 and recommend_max_length([65] * 10) == 128
    assert cut_shares([100, 300], 200) == {"max_length": 200, "examples_cut": 0.5, "tokens_cut": 0.25}
    assert packing_fill([60, 40, 50, 50, 30], 100) == {"max_length": 100, "sequences": 3, "fill": 230 / 300}


def _write_special_token_rows(path, lengths):
    # Each '<|im_start|>' is one token and text rows get EOS: a row of n-1 of them is exactly n tokens.
    path.write_text("".join(json.dumps({"text": "<|im_start|>" * (n - 1)}) + "\n" for n in lengths))


def test_stats_on_a_constructed_distribution(tiny_qwen2, tmp_path, capsys):
    path = tmp_path / "known.jsonl"
    lengths = [100] * 985 + [1000] * 15
    _write_special_token_rows(path, lengths)
    stats = stats_target(str(path), str(tiny_qwen2))
    st = stats.lengths
    assert (st.examples, st.max, st.p50, st.total_tokens) == (1000, 1000, 100.0, sum(lengths))
    assert st.recommended_max_length == 1024
    assert st.cut[0] == {"max_length": 128, "examples_cut": 0.015, "tokens_cut": 15 * 872 / sum(lengths)}
    assert stats.sources[0]["rows"] == 1000 and stats.sources[0]["train"] == 1000
    assert main(["data", "stats", str(path), "--model", str(tiny_qwen2), "--keep", "0.98", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lengths"]["recommended_max_length"] == 128


def test_stats_text_report_has_histogram(tiny_qwen2, tmp_path, capsys):
    path = tmp_path / "known.jsonl"
    _write_special_token_rows(path, [10, 20, 30, 40])
    assert main(["data", "stats", str(path), "--model", str(tiny_qwen2)]) == 0
    out = capsys.readouterr().out
    assert "recommended max_length: 64 (smallest multiple of 64 keeping >= 99.0% of examples whole)" in out
    assert "tokens/example: mean 25.0  p50 25  p90 37  p95 38  p99 40  max 40" in out
    assert out.count("█") > 4


def test_stats_needs_a_model_for_a_bare_file(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "hi"}\n')
    assert main(["data", "stats", str(path)]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_stats_on_10000_rows_under_10_seconds(tiny_qwen2, tmp_path):
    words = "the model reads many short sentences about cats dogs weather money time and numbers like 42 or 7".split()
    rng = random.Random(0)
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(10_000):
            question = " ".join(rng.choices(words, k=rng.randint(10, 60)))
            answer = " ".join(rng.choices(words, k=rng.randint(10, 120)))
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"{i}: {question}"},
                            {"role": "assistant", "content": answer},
                        ]
                    }
                )
                + "\n"
            )
    start = time.perf_counter()
    stats = stats_target(str(path), str(tiny_qwen2))
    elapsed = time.perf_counter() - start
    assert stats.lengths.examples == 10_000
    assert elapsed < 10, f"data stats took {elapsed:.1f} s"


CHATML_ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def test_preview_marks_loss_tokens_with_brackets(tiny_qwen2, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(CHATML_ROW) + "\n")
    assert main(["data", "preview", str(path), "--model", str(tiny_qwen2), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[Hello!<|im_end|>]\n" in out
    assert "warning" not in out


def test_preview_warns_about_eos_marker_and_truncation(tiny_qwen2, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(CHATML_ROW) + "\n")
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    assert main(["data", "preview", str(path), "--model", str(tiny_qwen2), "--chat-template", str(template)]) == 0
    out = capsys.readouterr().out
    assert "warning: the end-of-turn / EOS token gets no loss: the model will not learn to stop" in out
    assert "warning: the chat template adds no assistant marker with add_generation_prompt" in out
    assert main(["data", "preview", str(path), "--model", str(tiny_qwen2), "--max-length", "8"]) == 0
    assert "warning: truncated: " in capsys.readouterr().out
