"""Which weights a run's consumers load (--checkpoint best|final|step-N), the remembered system prompt, and the
notebook object `tunesmith.Run` over the same functions."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.unit.run_fixtures_eval import make_run_dir
from tunesmith.errors import TunesmithError
from tunesmith.run_dir import RunDir, read_jsonl


@pytest.fixture(scope="module")
def run_dir(tiny_qwen2, tmp_path_factory):
    """A finished run whose best/ (from an earlier step) differs from final/, plus checkpoints/step-3/."""
    root = tmp_path_factory.mktemp("weights")
    run = make_run_dir(root / "run", tiny_qwen2, n_test=2, seed=0)
    other = make_run_dir(root / "other", tiny_qwen2, n_test=2, seed=7)
    shutil.copytree(other / "final", run / "best")
    (run / "checkpoints").mkdir()
    shutil.copytree(other / "final", run / "checkpoints" / "step-3")
    return run


def lora_weights(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def saved_lora(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def same_as(loaded: dict, saved: dict) -> bool:
    import torch

    values = list(saved.values())
    return len(loaded) == len(values) and all(any(torch.equal(v, s) for s in values) for v in loaded.values())


def test_best_is_the_default_and_final_or_step_n_are_chosen_by_name(run_dir):
    from tunesmith.model.from_run import checkpoint_folder, load_tuned

    run = RunDir.of(run_dir)
    assert checkpoint_folder(run) == (run.best, "best")
    best, final, step = (saved_lora(run.best), saved_lora(run.final), saved_lora(run.checkpoints / "step-3"))
    default = lora_weights(load_tuned(run_dir)[0])
    assert same_as(default, best) and not same_as(default, final)  # planted: final/ must not be what loads
    assert same_as(lora_weights(load_tuned(run_dir, checkpoint="final")[0]), final)
    assert same_as(lora_weights(load_tuned(run_dir, checkpoint="step-3")[0]), step)
    with pytest.raises(TunesmithError, match="--checkpoint step-9: not a checkpoint") as err:
        checkpoint_folder(run, "step-9")
    assert "this run kept: best, final, step-3" in str(err.value)


def test_without_best_the_default_is_final(tiny_qwen2, tmp_path):
    from tunesmith.model.from_run import checkpoint_folder

    run = RunDir.of(make_run_dir(tmp_path / "r", tiny_qwen2, n_test=1))
    assert checkpoint_folder(run) == (run.final, "final")
    with pytest.raises(TunesmithError, match="kept no best/ weights"):
        checkpoint_folder(run, "best")


def test_eval_records_the_weights_it_used(run_dir, capsys):
    from tunesmith.cli.main import main
    from tunesmith.eval.evaluate import evaluate

    assert evaluate(run_dir, base=False, limit=1)["checkpoint"] == "best"
    assert main(["eval", str(run_dir), "--no-base", "--limit", "1", "--checkpoint", "final"]) == 0
    assert f"weights: {run_dir} final/" in capsys.readouterr().out
    assert json.loads((run_dir / "eval" / "metrics.json").read_text())["checkpoint"] == "final"


def test_generate_and_eval_use_the_run_system_prompt(run_dir, tmp_path, capsys):
    from tunesmith.cli.main import main
    from tunesmith.eval.evaluate import evaluate

    run = RunDir.of(run_dir)
    system = "You turn a user's request into JSON with the keys intent and slots."
    manifest = json.loads(run.manifest.read_text())
    run.manifest.write_text(json.dumps({**manifest, "system_prompt": system}))
    try:
        out = tmp_path / "g.jsonl"
        assert (
            main(["generate", str(run_dir), "--prompt", "wake me at 7", "--max-new-tokens", "3", "--out", str(out)])
            == 0
        )
        assert read_jsonl(out)[0]["messages"][0] == {"role": "system", "content": system}
        assert (
            main(
                ["generate", str(run_dir), "--prompt", "hi", "--max-new-tokens", "3", "--no-system", "--out", str(out)]
            )
            == 0
        )
        assert read_jsonl(out)[0]["messages"] == [{"role": "user", "content": "hi"}]
        # rows of an --data file without a system turn are evaluated with the run's prompt
        data = tmp_path / "plain.jsonl"
        data.write_text(
            json.dumps({"messages": [{"role": "user", "content": "stop"}, {"role": "assistant", "content": "{}"}]})
            + "\n"
        )
        evaluate(run_dir, data=data, base=False)
        (row,) = read_jsonl(run.eval / "outputs.jsonl")
        assert row["messages"][0] == {"role": "system", "content": system}
    finally:
        run.manifest.write_text(json.dumps(manifest))


def test_notebook_run_object_uses_the_same_functions(run_dir):
    import tunesmith

    run = tunesmith.Run(run_dir)
    assert run.path == run_dir and run.metrics == RunDir.of(run_dir).read_metrics() and isinstance(run.metrics[0], dict)
    result = run.evaluate(base=False, limit=1)
    assert result["models"] == ["tuned"] and result["checkpoint"] == "best"
    answer = run.generate("wake me at 7", max_new_tokens=3)
    assert isinstance(answer, str)
    samples = run.generate("wake me at 7", max_new_tokens=3, temperature=0.9, num_samples=2, seed=1)
    assert isinstance(samples, list) and len(samples) == 2
    with pytest.raises(TunesmithError, match="not a tunesmith run directory"):
        tunesmith.Run(run_dir / "eval")
