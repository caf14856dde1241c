"""The bench's statistics on hand-made curves: episodes-to-threshold, medians with runs that
never crossed, bootstrap intervals and ratios as numbers or bounds (arithmetic in comments)."""

import json
import math

from archer.bench.curves import (
    episodes_to_threshold,
    median_ci,
    ratio,
    ratio_interval,
    read_curve,
)


def test_episodes_to_threshold_is_the_first_mark_at_or_above():
    eps = [0, 32, 64, 96]
    assert episodes_to_threshold(eps, [-9, -8, -6, -7], -6) == 64  # -6 >= -6 at 64, not 96
    assert episodes_to_threshold(eps, [-5, -8, -6, -7], -6) == 0  # the start already is
    assert episodes_to_threshold(eps, [-9, -8, -7, -7], -6) is None  # never: "> budget"


def test_median_counts_a_run_that_never_crossed_as_beyond_the_budget():
    # seeds 64, 128, never: sorted 64, 128, inf -> the middle one, 128
    ci = median_ci([64, 128, None], resamples=500)
    assert ci.median == 128
    # every resample's median is one of the three order statistics, so the interval's ends are
    assert ci.low in (64, 128, math.inf) and ci.high in (64, 128, math.inf)
    # a resample of (inf, inf, x) has median inf: with 3 seeds P = 7/27 > 2.5%, so high = inf
    assert ci.high == math.inf and ci.low == 64
    # two of three never crossed: the median itself is beyond the budget
    assert median_ci([64, None, None], resamples=200).median == math.inf
    # even count: the mean of the two middle values (64 and 128 -> 96)
    assert median_ci([32, 64, 128, 256], resamples=10).median == 96


def test_identical_seeds_give_a_degenerate_interval():
    ci = median_ci([96, 96, 96], resamples=300)
    assert (ci.median, ci.low, ci.high) == (96, 96, 96)


def test_ratio_is_a_number_only_when_both_crossed():
    assert ratio(640, 64, budget=1280).text() == "10.00x"  # 640 / 64
    # the method never crossed within 1280 episodes; the baseline at 64: more than 1280/64 = 20x
    r = ratio(math.inf, 64, budget=1280)
    assert (r.kind, r.value, r.text()) == ("lower", 20.0, "> 20.00x")
    # the baseline never crossed, the method at 320: less than 320/1280 = 0.25x
    r = ratio(320, math.inf, budget=1280)
    assert (r.kind, r.value, r.text()) == ("upper", 0.25, "< 0.25x")
    assert ratio(math.inf, math.inf, budget=1280).kind == "undetermined"


def test_ratio_interval_marks_an_end_that_rests_on_a_censored_resample():
    # method: every seed beyond the budget; baseline: 64 each -> every resample is 1280/64 = 20,
    # a lower bound
    assert ratio_interval([None, None, None], [64, 64, 64], 1280, 200) == ("> 20.00x", "> 20.00x")
    # both always crossed: 128/64 = 2 in every resample
    assert ratio_interval([128, 128, 128], [64, 64, 64], 1280, 200) == ("2.00x", "2.00x")
    # neither crossed: nothing to say
    assert ratio_interval([None] * 3, [None] * 3, 1280, 50) == ("undetermined", "undetermined")


def test_read_curve_keeps_the_last_line_of_an_iteration_and_only_evaluated_ones(tmp_path):
    rows = [{"iteration": -1, "eval/return_sample": -9.0, "eval/return_greedy": -3.4,
             "eval/success_sample": 0.5, "eval/success_greedy": 1.0, "progress/env_episodes": 0},
            {"iteration": 0, "progress/env_episodes": 32},  # no evaluation at this iteration
            {"iteration": 1, "eval/return_sample": -8.5, "eval/return_greedy": -3.4,
             "eval/success_sample": 0.6, "eval/success_greedy": 1.0, "progress/env_episodes": 64},
            # a resume logged iteration 1 again: the later line wins
            {"iteration": 1, "eval/return_sample": -8.0, "eval/return_greedy": -3.4,
             "eval/success_sample": 0.7, "eval/success_greedy": 1.0, "progress/env_episodes": 64,
             "progress/wall_s": 12.5}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = read_curve(path)
    assert [m["iteration"] for m in curve] == [-1, 1]
    assert curve[1]["return_sample"] == -8.0 and curve[1]["wall_s"] == 12.5
    assert curve[0]["env_episodes"] == 0 and curve[1]["env_episodes"] == 64
