"""Offline twins of the shipped recipes: the real config, with `--set` overrides to a tiny local model (or
stories260K) and local rows with exactly the columns of the public set the recipe names (examples/README.md),
run with `tunesmith run --smoke` through every stage: data check, train, eval, report, export."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_path
from tunesmith.cli.main import main
from tunesmith.run_dir import RunDir, read_jsonl

pytestmark = pytest.mark.slow
EXAMPLES = REPO / "examples"


def cli(*args: str) -> None:
    code = main([str(a) for a in args])
    assert code == 0, f"tunesmith {' '.join(map(str, args))} exited {code}"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_rows(n: int, topic: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"{topic} question {i}: what is {a} plus {b}?"},
                    {"role": "assistant", "content": f"For {topic}, {a} plus {b} is {a + b}."},
                ]
            }
        )
    return rows


def smoke_run(config: Path, tmp_path: Path, *overrides: str) -> RunDir:
    """`tunesmith run CONFIG --smoke`: the recipe's whole pipeline must finish (exit 0)."""
    sets = [f"run.output_dir={tmp_path / 'runs'}", "tracking.report_to=[none]", *overrides]
    cli("run", config, "--smoke", *[x for s in sets for x in ("--set", s)])
    runs = sorted((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    run = RunDir.of(runs[-1])
    assert (run.final / "tokenizer_config.json").exists() and run.read_metrics()
    assert run.report.exists(), "the pipeline wrote no report"
    return run


def test_yahoo_questions_twin(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # sentence-transformers/yahoo-answers, config title-question-pair: columns title and questions
    rows = [
        {"title": f"Why is the sky {c}?", "questions": f"I saw a {c} sky today, what causes it?"}
        for c in [
            "blue",
            "red",
            "grey",
            "orange",
            "pink",
            "dark",
            "bright",
            "white",
            "purple",
            "gold",
            "green",
            "black",
        ]
    ]
    data = write_jsonl(tmp_path / "yahoo.jsonl", rows)
    config = EXAMPLES / "yahoo-questions" / "config.yaml"
    sets = [f"data.sources.0.path={data}", "data.sources.0.name=null", "model.name_or_path=tiny:qwen2"]
    cli("data", "check", config, *[x for s in sets for x in ("--set", s)])
    run = smoke_run(config, tmp_path, *sets)
    assert run.read_manifest().mode == "qlora"
    assert read_jsonl(run.split_file("train"))[0]["messages"][1]["content"].startswith("Why is the sky ")
    # The recipe keeps no test split (data.split.test: 0): eval falls back to the validation split and says so.
    metrics = json.loads((run.eval / "metrics.json").read_text())
    assert metrics["split"] == "val" and "no test split" in metrics["note"] and "loss" in metrics["metrics"]
    assert "evaluating on the validation split" in capsys.readouterr().out
    capsys.readouterr()
    out = tmp_path / "questions.jsonl"
    cli(
        "generate",
        run.root,
        "--prompt",
        "Ask a question",
        "-n",
        "5",
        "--temperature",
        "0.9",
        "--max-new-tokens",
        "12",
        "--seed",
        "1",
        "--out",
        out,
    )
    (row,) = read_jsonl(out)
    assert len(row["samples"]) == 5 and len(set(row["samples"])) > 1


def test_experimentation_qa_twin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "experimentation_qa.jsonl", chat_rows(20, "experiment", 1))
    write_jsonl(tmp_path / "data" / "experimentation_qa_synthetic.jsonl", chat_rows(20, "synthetic", 2))
    config = EXAMPLES / "experimentation-qa" / "config.json"
    sets = ["model.name_or_path=tiny:llama"]
    cli("data", "check", config, *[x for s in sets for x in ("--set", s)])
    run = smoke_run(config, tmp_path, *sets)
    assert run.read_manifest().mode == "qlora"
    assert list(run.export.glob("*q4_k_m.gguf")) or importlib.util.find_spec("llama_cpp") is None
    cli("eval", run.root, "--limit", "2")
    metrics = json.loads((run.eval / "metrics.json").read_text())["metrics"]
    assert {"loss", "perplexity", "rouge1", "rougeL"} <= set(metrics)
    assert metrics["loss"]["tuned"] > 0


def test_intent_json_twin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from tunesmith.data.synth import intent_dataset

    rows = intent_dataset(rows=60, seed=3, system_prompt=None)
    for split, part in {"train": rows[:40], "val": rows[40:50], "test": rows[50:]}.items():
        write_jsonl(tmp_path / "data" / "intent" / f"{split}.jsonl", [{"messages": r["messages"]} for r in part])
    (tmp_path / "examples" / "intent-json").mkdir(parents=True)
    (tmp_path / "examples" / "intent-json" / "system_prompt.txt").write_text(
        (EXAMPLES / "intent-json" / "system_prompt.txt").read_text()
    )
    config = EXAMPLES / "intent-json" / "config.yaml"
    system = (EXAMPLES / "intent-json" / "system_prompt.txt").read_text().strip()
    sets = ["model.name_or_path=tiny:qwen2"]
    cli("data", "check", config, *[x for s in sets for x in ("--set", s)])
    run = smoke_run(config, tmp_path, *sets)
    test_rows = read_jsonl(run.split_file("test"))
    assert 0 < len(test_rows) <= 10 and test_rows[0]["messages"][0] == {"role": "system", "content": system}
    assert run.read_manifest().system_prompt == system  # the run remembers the prompt it trained with
    metrics = json.loads((run.eval / "metrics.json").read_text())["metrics"]
    assert {"json_valid", "json_field_accuracy"} <= set(metrics)
    # generate on the run uses the training system prompt without being told it
    out = tmp_path / "answers.jsonl"
    cli("generate", run.root, "--prompt", "wake me up at 7am", "--max-new-tokens", "8", "--out", out)
    assert read_jsonl(out)[0]["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "wake me up at 7am"},
    ]
    pytest.importorskip("llama_cpp")
    export = run.export
    assert (export / "merged" / "config.json").exists()
    assert list(export.glob("*q4_k_m.gguf")), "no q4_k_m GGUF written"
    modelfile = (export / "Modelfile").read_text()
    assert "FROM " in modelfile and "<|im_end|>" in modelfile
    (system_line,) = [line for line in modelfile.splitlines() if line.startswith("SYSTEM ")]
    assert system_line == f'SYSTEM """{system}"""'  # the Modelfile's SYSTEM is the training system prompt


def test_meta_review_summary_twin_on_tiny_gpt_neox_exports(tmp_path, monkeypatch, capsys):
    """Pythia-70m is GPT-NeoX: the twin is a tiny GPT-NeoX on a real BPE tokenizer (SmolLM2's, which llama.cpp's
    converter recognises), trained, evaluated and exported through llama.cpp's converter with parity."""
    smollm2 = shared_path("models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.chdir(tmp_path)
    # zqz979/meta-review: columns Input (the reviews) and Output (the meta-review)
    cli("model", "tiny", "--arch", "gpt_neox", "--tokenizer", smollm2, "--out", tmp_path / "pythia-tiny")
    rows = [
        {
            "Input": f"Review {i}: the paper is <b>clear</b> & the method works on {i} tasks!!",
            "Output": f"The reviewers agree the paper is clear; results on {i} tasks.",
        }
        for i in range(12)
    ]
    data = write_jsonl(tmp_path / "reviews.jsonl", rows)
    config = EXAMPLES / "meta-review-summary" / "config.yaml"
    sets = [f"data.sources.0.path={data}", f"model.name_or_path={tmp_path / 'pythia-tiny'}", "data.max_length=128"]
    cli("data", "check", config, *[x for s in sets for x in ("--set", s)])
    run = smoke_run(config, tmp_path, *sets)
    assert run.read_manifest().mode == "full"
    train_rows = read_jsonl(run.split_file("train"))
    assert all("<b>" not in m["content"] and "&" not in m["content"] for r in train_rows for m in r["messages"])
    cli("eval", run.root, "--limit", "2")
    metrics = json.loads((run.eval / "metrics.json").read_text())["metrics"]
    assert {"rouge1", "rouge2", "rougeL"} <= set(metrics) and "base" in metrics["rouge1"]
    assert (run.eval / "outputs.csv").exists()  # the base-vs-tuned sheet for manual review
    capsys.readouterr()
    cli(
        "generate",
        run.root,
        "--prompt",
        "Summarize these reviews:\nReview 1: the paper is clear",
        "--repetition-penalty",
        "1.3",
        "--max-new-tokens",
        "16",
    )
    assert capsys.readouterr().out.strip()
    pytest.importorskip("llama_cpp")
    cli("export", run.root, "--gguf", "f16", "q8_0")  # the recipe itself writes q8_0
    payload = json.loads((run.export / "parity.json").read_text())
    formats = payload["formats"]
    assert payload["verdict"] == "passed" and formats["f16"]["measured"]["tokenization_match_rate"] == 1.0
    assert set(formats) == {"f16", "q8_0"}


def test_finetome_then_gsm8k_twin(tmp_path, monkeypatch, capsys):
    gsm8k = shared_path("gsm8k", "train.jsonl")
    monkeypatch.chdir(tmp_path)
    # mlabonne/FineTome-100k: conversations (from/value), source, score
    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": r["messages"][0]["content"]},
                {"from": "gpt", "value": r["messages"][1]["content"]},
            ],
            "source": "infini-instruct-top-500k",
            "score": 4.5 + i / 100,
        }
        for i, r in enumerate(chat_rows(16, "tome", 4))
    ]
    data = write_jsonl(tmp_path / "finetome.jsonl", sharegpt)
    sft_sets = [f"data.sources.0.path={data}", "model.name_or_path=tiny:llama"]
    cli("data", "check", EXAMPLES / "finetome-then-gsm8k" / "sft.yaml", *[x for s in sft_sets for x in ("--set", s)])
    sft = smoke_run(EXAMPLES / "finetome-then-gsm8k" / "sft.yaml", tmp_path, *sft_sets)
    grpo_sets = [
        f"data.sources.0.path={gsm8k}",
        "data.sources.0.name=null",
        "data.sources.0.limit=40",
        f"train.init_from={sft.root}",
        "model.name_or_path=tiny:llama",
        "grpo.num_generations=2",
        "grpo.max_completion_length=8",
        "eval.max_new_tokens=8",
    ]
    grpo = smoke_run(EXAMPLES / "finetome-then-gsm8k" / "grpo.yaml", tmp_path, *grpo_sets)
    assert grpo.read_manifest().method == "grpo"
    cli("eval", grpo.root, "--limit", "2")
    metrics = json.loads((grpo.eval / "metrics.json").read_text())["metrics"]
    assert "numeric_accuracy" in metrics and {"base", "tuned", "delta"} <= set(metrics["numeric_accuracy"])
