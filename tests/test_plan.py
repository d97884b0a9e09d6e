"""`workbench scaling plan`: an IsoFLOP study's runs, each with the budget's FLOPs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaling.conventions import CONVENTIONS, flops_per_token
from scaling.study.plan import MIN_STEPS, plan_isoflop
from tests.conftest import assert_clean_error, run_cli
from workbench.errors import InputError

SHAPE = {"head_dim": 8, "depth": 2, "seq_len": 32, "batch_size": 16, "vocab": 256, "mlp_ratio": 4}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_every_run_has_the_budgets_flops_and_the_sizes_span_a_factor_8(convention):
    budgets = [1e13, 4e13, 1.6e14]
    plan = plan_isoflop(budgets, 5, convention, **SHAPE)
    assert len(plan) == 15
    for C in budgets:
        runs = [r for r in plan if r.budget == C]
        Ns = [r.N for r in runs]
        assert Ns == sorted(Ns) and len(set(Ns)) == 5 and Ns[-1] / Ns[0] >= 8
        for r in runs:
            # recomputed independently: FLOPs per token under the convention × the tokens trained
            per_token = flops_per_token(convention, width=r.width, depth=r.depth, vocab=256, seq_len=32,
                                        d_ff=4 * r.width, ffn="mlp", n_heads=r.width // 8)  # fmt: skip
            assert r.steps * 16 * 32 == r.D and r.steps >= MIN_STEPS
            assert abs(per_token * r.D / C - 1) <= 0.01 and pytest.approx(per_token * r.D) == r.C
            assert r.width % 8 == 0 and r.heads == r.width // 8
        # centred on the expected optimum sqrt(C / 120)
        assert math.isclose(math.log(np.sqrt(Ns[0] * Ns[-1])), math.log(math.sqrt(C / 120)), abs_tol=0.35)


def test_bad_budgets_and_sizes_are_refused():
    with pytest.raises(InputError, match="every budget must be a positive number"):
        plan_isoflop([1e13, 0], 5, "standard", **SHAPE)
    with pytest.raises(InputError, match="every budget must be a positive number"):
        plan_isoflop([float("nan")], 5, "standard", **SHAPE)
    with pytest.raises(InputError, match="too small for the smallest model .* at least 50"):
        plan_isoflop([1e8], 5, "standard", **SHAPE)
    with pytest.raises(InputError, match="too small for 5 sizes around its optimum"):
        plan_isoflop([1e9], 5, "standard", **SHAPE)
    with pytest.raises(InputError, match="not enough distinct shapes near the optimum"):
        plan_isoflop([1e13], 400, "standard", **SHAPE)
    with pytest.raises(InputError, match="at least 2 sizes"):
        plan_isoflop([1e13], 1, "standard", **SHAPE)


def test_plan_cli_json_and_clean_errors():
    result = run_cli("scaling", "plan", "lm_mup_tiny", "--budgets", "1e13,4e13", "--sizes", "5", "--convention",
                     "standard", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10 and {"budget", "N", "D", "C", "width", "depth", "steps"} <= set(rows[0])
    assert all(abs(r["C"] / r["budget"] - 1) <= 0.01 for r in rows)
    assert_clean_error(run_cli("scaling", "plan", "lm_mup_tiny", "--budgets", "1e13,-4", "--convention", "standard"),
                       "every budget must be a positive number")  # fmt: skip
    assert_clean_error(run_cli("scaling", "plan", "lm_mup_tiny", "--budgets", "1e13,x", "--convention", "standard"),
                       "give FLOPs separated by commas")  # fmt: skip
    assert_clean_error(run_cli("scaling", "plan", "lm_mup_tiny", "--budgets", "1e7", "--convention", "kaplan"),
                       "too small for the smallest model")  # fmt: skip
    assert_clean_error(run_cli("scaling", "plan", "mlp_tiny", "--budgets", "1e13", "--convention", "standard"),
                       "needs a gpt_lm job config")  # fmt: skip


def test_each_run_gets_porian_corrections_and_each_can_be_switched_off():
    from scaling.study.plan import WARMUP_SHARE, Corrections, run_settings

    plan = plan_isoflop([1e13, 4e13], 5, "standard", **SHAPE)
    longest = max(r.steps for r in plan)
    for run, s in zip(plan, run_settings(plan, Corrections(), tokens_per_step=512, warmup_steps=300)):
        # warm-up of N tokens (Porian et al. 2024), at most a tenth of the run; decay to the run's end
        assert s["model.warmup_steps"] == max(1, min(math.ceil(run.N / 512), int(WARMUP_SHARE * run.steps)))
        assert s["model.warmup_steps"] <= max(1, run.steps // 10)
        assert s["model.lr_decay_steps"] == run.steps == s["train.max_steps"]
        assert s["model.parametrization"] == "mup" and (s["model.width"], s["model.depth"]) == (run.width, run.depth)
    kaplan = run_settings(plan, Corrections(False, False, False), tokens_per_step=512, warmup_steps=300)
    assert {s["model.warmup_steps"] for s in kaplan} == {300}
    assert {s["model.lr_decay_steps"] for s in kaplan} == {longest}
    assert {s["model.parametrization"] for s in kaplan} == {"sp"}


def test_a_check_sweep_centres_on_a_given_n():
    plan = plan_isoflop([4e13], 5, "standard", **SHAPE, spread=4.0, centre=2e5)
    Ns = [r.N for r in plan]
    assert Ns[-1] / Ns[0] >= 4 and abs(math.log(math.sqrt(Ns[0] * Ns[-1]) / 2e5)) < 0.3
    with pytest.raises(InputError, match="--centre"):
        plan_isoflop([4e13], 5, "standard", **SHAPE, centre=-1.0)


def test_plan_flags_show_the_schedule_and_kaplan_style_turns_the_corrections_off():
    base = ["scaling", "plan", "isoflop_demo", "--budgets", "1e11,3e11", "--sizes", "5", "--convention", "standard",
            "--tokens-per-param", "150", "--json"]  # fmt: skip
    corrected, kaplan = run_cli(*base), run_cli(*base, "--kaplan-style")
    assert corrected.returncode == 0 and kaplan.returncode == 0, corrected.stderr + kaplan.stderr
    rows, k_rows = json.loads(corrected.stdout), json.loads(kaplan.stdout)
    assert all(r["lr_decay_steps"] == r["steps"] and r["parametrization"] == "mup" for r in rows)
    assert {r["warmup_steps"] for r in k_rows} == {100} and {r["parametrization"] for r in k_rows} == {"sp"}
    assert {r["lr_decay_steps"] for r in k_rows} == {max(r["steps"] for r in k_rows)}


def test_seed_replicates_are_members_of_their_own_and_bad_seeds_are_refused():
    from scaling.study.cli import member_settings, plan_for, plan_members
    from scaling.study.plan import Corrections

    job, plan = plan_for("isoflop_demo", [], [1e11], 3, "standard", tokens_per_param=150.0)
    settings = member_settings(job, plan, Corrections())
    members = plan_members("isoflop_demo", [], plan, settings, [0, 3])
    assert len(members) == 6 and len({m.config.resolved_run_id for m in members}) == 6
    assert [m.params["seed"] for m in members] == [0, 3] * 3
    assert [m.config.train.seed for m in members] == [0, 3] * 3
    assert {m.config.model.width for m in members[:2]} == {plan[0].width}
    assert "seed" not in plan_members("isoflop_demo", [], plan, settings)[0].params
    bad = run_cli("scaling", "plan", "isoflop_demo", "--budgets", "1e11", "--convention", "standard", "--seeds", "1,1")
    assert_clean_error(bad, "--seeds")
