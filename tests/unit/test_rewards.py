"""GRPO rewards: built-in scores, custom functions, options, weighted totals, the TRL adapter, prompt rows."""

from __future__ import annotations

import math

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError, DataError
from tunesmith.rewards import RewardError, build_reward, build_rewards, to_trl, total_scores
from tunesmith.rewards.builtin import contains, format_reward, json_match, json_valid, length_reward, numeric_match
from tunesmith.rewards.prompts import grpo_rows, reward_columns


def grpo_config(rewards, **grpo):
    return load_config(data={"method": "grpo", "grpo": {"rewards": rewards, **grpo}})


def test_format_named_pattern_requires_the_whole_completion():
    texts = [
        "<reasoning>3 + 4</reasoning>\n<answer>7</answer>",
        "<reasoning>3 + 4</reasoning><answer>7</answer> and more",
        "<answer>7</answer>",
        "",
    ]
    assert format_reward(texts) == [1.0, 0.0, 0.0, 0.0]
    assert format_reward(texts, pattern="answer", full=False) == [1.0, 1.0, 1.0, 0.0]
    assert format_reward(["yes", "no"], pattern=r"yes|maybe") == [1.0, 0.0]


def test_format_bad_regex_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid regex"):
        format_reward(["x"], pattern="(unclosed")


def test_numeric_match_reads_gsm8k_references():
    answers = ["She sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "#### 1,000", "#### 5"]
    texts = ["<answer>72</answer>", "the answer is 1000", "no number here"]
    assert numeric_match(texts, answer=answers) == [1.0, 1.0, 0.0]
    assert numeric_match(["3.0"], reference_column="target", target=[3]) == [1.0]


def test_numeric_match_missing_reference_column_names_the_columns():
    with pytest.raises(KeyError, match="no column 'answer' \\(columns: question\\)"):
        numeric_match(["1"], question=["q"])


def test_json_rewards():
    assert json_valid(['{"a": 1}', "text ```json\n[1, 2]\n``` more", "{broken"]) == [1.0, 1.0, 0.0]
    assert json_valid(['{"a": 1}', 'x {"a": 1}'], strict=True) == [1.0, 0.0]
    reference = ['{"intent": "book", "people": 2}'] * 3
    texts = ['{"intent": "book", "people": 2}', '{"intent": "book", "people": 3}', "none"]
    assert json_match(texts, answer=reference) == [1.0, 0.5, 0.0]
    assert json_match(texts, answer=reference, fields=["people"]) == [1.0, 0.0, 0.0]
    assert json_match(["[1, 2]", "[2, 1]"], answer=[[1, 2], [1, 2]]) == [1.0, 0.0]


def test_length_is_smooth_outside_the_range():
    assert length_reward(["abcd", "abcdefgh", "a" * 20], min=8, max=10) == [0.5, 1.0, 0.5]
    assert length_reward(["one two three"], min=6, unit="words") == [0.5]


def test_contains_scores_the_share_found():
    assert contains(["Paris is big", "london", "PARIS and London"], text=["paris", "london"]) == [0.5, 0.5, 1.0]
    assert contains(["Paris"], text="paris", case_sensitive=True) == [0.0]


def test_build_rewards_binds_options_reference_column_and_unique_names():
    cfg = grpo_config(
        [
            {"name": "numeric_match", "weight": 2.0},
            {"name": "contains", "options": {"text": "a"}},
            {"name": "contains", "options": {"text": "b"}},
        ],
        reference_column="target",
    )
    rewards = build_rewards(cfg.grpo)
    assert [r.name for r in rewards] == ["numeric_match", "contains", "contains#2"]
    scores = {r.name: r(["a 4", "b 5"], target=["4", "4"]) for r in rewards}
    assert scores == {"numeric_match": [1.0, 0.0], "contains": [1.0, 0.0], "contains#2": [0.0, 1.0]}
    assert total_scores(rewards, scores) == [3.0, 1.0]


def test_unknown_builtin_and_unknown_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown built-in reward 'formatt'"):
        build_rewards(grpo_config([{"name": "formatt"}]).grpo)
    with pytest.raises(ConfigError, match="'length': unknown option\\(s\\) maximum") as info:
        build_rewards(grpo_config([{"name": "length", "options": {"maximum": 3}}]).grpo)
    assert "max, min, unit" in str(info.value)


def test_custom_reward_from_file_with_options_and_selected_columns(tmp_path):
    (tmp_path / "my_rewards.py").write_text(
        "def exclaim(completions, answer, bonus=1.0):\n"
        "    return [bonus if c.endswith('!') and answer[i] else 0.0 for i, c in enumerate(completions)]\n"
    )
    cfg = grpo_config([{"function": "my_rewards.py:exclaim", "options": {"bonus": 0.5}}])
    (reward,) = build_rewards(cfg.grpo, base_dir=tmp_path)
    assert reward.name == "exclaim"
    # question is not a parameter of exclaim: it is not passed.
    assert reward(["hi!", "hi"], answer=["x", "y"], question=["q", "q"]) == [0.5, 0.0]


def test_custom_reward_from_module():
    (reward,) = build_rewards(grpo_config([{"function": "tunesmith.rewards.builtin:json_valid"}]).grpo)
    assert reward(["{}", "x"]) == [1.0, 0.0]


def test_custom_reward_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="file 'nope.py' not found"):
        build_rewards(grpo_config([{"function": "nope.py:f"}]).grpo)
    (tmp_path / "r.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="has no function 'f'"):
        build_rewards(grpo_config([{"function": "r.py:f"}]).grpo, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        build_rewards(grpo_config([{"function": "no_such_module_xyz:f"}]).grpo)


def test_broken_reward_raises_reward_error_with_its_name(tmp_path):
    (tmp_path / "bad.py").write_text(
        "def boom(completions, **kw):\n    raise ValueError('cannot parse')\n"
        "def short(completions, **kw):\n    return [1.0]\n"
        "def words(completions, **kw):\n    return ['high' for _ in completions]\n"
    )
    base = dict(base_dir=tmp_path)
    for func, message in [
        ("boom", "reward 'boom' raised ValueError: cannot parse"),
        ("short", "reward 'short' returned 1 values; expected a list of 2 floats"),
        ("words", "reward 'words' returned a non-number"),
    ]:
        (reward,) = build_rewards(grpo_config([{"function": f"bad.py:{func}"}]).grpo, **base)
        with pytest.raises(RewardError, match=message):
            reward(["a", "b"])


def test_none_abstains_and_counts_zero_in_the_total(tmp_path):
    (tmp_path / "abstain.py").write_text("def maybe(completions, **kw):\n    return [None, 2]\n")
    (reward,) = build_rewards(grpo_config([{"function": "abstain.py:maybe", "weight": 3}]).grpo, base_dir=tmp_path)
    scores = {reward.name: reward(["a", "b"])}
    assert math.isnan(scores["maybe"][0])
    assert total_scores([reward], scores) == [0.0, 6.0]


def test_trl_adapter_reads_conversational_completions_and_drops_trl_kwargs():
    reward = build_reward(grpo_config([{"name": "numeric_match"}]).grpo.rewards[0])
    trl_func = to_trl(reward)
    completions = [[{"role": "assistant", "content": "<answer>7</answer>"}], [{"role": "assistant", "content": "8"}]]
    scores = trl_func(
        prompts=[[], []],
        completions=completions,
        completion_ids=[[1], [2]],
        answer=["#### 7"] * 2,
        trainer_state=object(),
        log_metric=print,
    )
    assert trl_func.__name__ == "numeric_match"
    assert scores == [1.0, 0.0]
    assert to_trl(reward)(prompts=["p"], completions=["7"], completion_ids=[[1]], answer=["7"]) == [1.0]


def test_grpo_rows_from_conversations_and_from_columns():
    cfg = load_config(
        data={"method": "grpo", "grpo": {"rewards": [{"name": "format"}]}, "data": {"system_prompt": "Think."}}
    )
    examples = [
        {
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "meta": {"level": 1},
        },
        {"text": "", "meta": {"question": "Natalia sold 48 clips...", "answer": "#### 72"}},
    ]
    rows = grpo_rows(examples, cfg)
    assert rows[0] == {"prompt": [{"role": "user", "content": "2+2?"}], "level": 1, "answer": "4"}
    assert rows[1]["prompt"] == [
        {"role": "system", "content": "Think."},
        {"role": "user", "content": "Natalia sold 48 clips..."},
    ]
    assert reward_columns(rows[1:]) == {"question": ["Natalia sold 48 clips..."], "answer": ["#### 72"]}


def test_grpo_rows_without_a_prompt_column_is_a_data_error():
    cfg = grpo_config([{"name": "format"}], prompt_column="problem")
    with pytest.raises(DataError, match="no 'problem' column \\(columns: question, answer\\)"):
        grpo_rows([{"text": "", "meta": {"question": "q", "answer": "a"}}], cfg)


# --- rewards as in Unsloth's GRPO notebooks (GSM8K rows: question, answer ending '#### <number>') ---
GSM8K_ANSWER = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"


def test_format_exact_and_approx_give_partial_credit_and_penalties():
    from tunesmith.rewards.builtin import format_approx, format_exact

    good = "<reasoning>48 + 24</reasoning>\n<answer>72</answer>\n"
    tail = "<reasoning>48 + 24</reasoning><answer>72</answer> so 72"
    double = "<reasoning>a</reasoning><reasoning>b</reasoning><answer>72</answer>"
    assert format_exact([good, tail, double, "72"]) == [3.0, 0.0, 3.0, 0.0]  # the block regex, as the notebook's
    assert format_exact([good], score=5.0, solution_start="<SOLUTION>", solution_end="</SOLUTION>") == [0.0]
    # per tag: +0.5 when it appears exactly once, -1.0 otherwise (missing or repeated)
    assert format_approx([good, tail, double, "72"]) == [2.0, 2.0, -1.0, -4.0]
    assert format_approx([double], credit=1.0, penalty=0.0) == [2.0]


def test_answer_check_grades_exact_stripped_close_and_wrong():
    from tunesmith.rewards.builtin import answer_check

    texts = [f"<reasoning>r</reasoning><answer>{a}</answer>" for a in ("72", " 72 ", "70", "60", "50", "seventy")] + [
        "72"
    ]
    assert answer_check(texts, answer=[GSM8K_ANSWER] * 7) == [3.0, 1.5, 1.0, 0.5, -1.5, -1.5, 0.0]
    custom = answer_check(
        texts[:1] + texts[4:5] + texts[6:], answer=[GSM8K_ANSWER] * 3, exact=5.0, wrong=-2.5, missing=-2.0
    )
    assert custom == [5.0, -2.5, -2.0]


def test_number_match_credits_equal_numbers_and_penalises_others():
    from tunesmith.rewards.builtin import number_match

    texts = ["<answer>72</answer>", "<answer>The total is 1,000 clips</answer>", "<answer>71</answer>", "72"]
    assert number_match(texts, answer=[GSM8K_ANSWER, "#### 1000", GSM8K_ANSWER, GSM8K_ANSWER]) == [1.5, 1.5, -0.5, 0.0]
    assert number_match(texts[2:3], answer=[GSM8K_ANSWER], credit=2.0, penalty=-1.0) == [-1.0]


def test_builtin_reward_options_are_checked_and_the_reference_column_is_filled():
    (reward,) = build_rewards(
        grpo_config([{"name": "answer_check", "options": {"exact": 4.0}}], reference_column="solution").grpo
    )
    assert reward.options == {"exact": 4.0, "reference_column": "solution"}
    assert reward(["<reasoning>r</reasoning><answer>7</answer>"], solution=["#### 7"]) == [4.0]
    with pytest.raises(ConfigError, match="unknown option\\(s\\) bonus"):
        build_rewards(grpo_config([{"name": "number_match", "options": {"bonus": 1}}]).grpo)


def test_custom_reward_gets_prompts_completions_and_columns_as_trl_passes_them(tmp_path):
    # The notebook's check_numbers reads prompts[0][-1]['content'] and completion[0]['content'].
    (tmp_path / "notebook.py").write_text(
        "def check(prompts, completions, answer, question, **kwargs):\n"
        "    assert prompts[0][-1]['content'] == question[0]\n"
        "    return [1.0 if c[0]['content'].endswith(a.split('####')[-1].strip()) else 0.0 for c, a in zip(completions, answer)]\n"
    )
    (reward,) = build_rewards(grpo_config([{"function": "notebook.py:check"}]).grpo, base_dir=tmp_path)
    trl_reward = to_trl(reward)
    prompts = [[{"role": "user", "content": "How many clips?"}]] * 2
    completions = [[{"role": "assistant", "content": "so 72"}], [{"role": "assistant", "content": "so 70"}]]
    scores = trl_reward(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1], [2]],
        answer=[GSM8K_ANSWER] * 2,
        question=["How many clips?"] * 2,
        trainer_state=object(),
    )
    assert scores == [1.0, 0.0]
