"""`workbench prose make-data` and `load_dataset` (operators/prose/dataset.py), `workbench bench prose`.

Samples, noise and target tokens as in the official PROSE code (github.com/felix-lyx/prose, prose_ode/);
data sizes are its `parsers.py` defaults.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import sympy

from operators.odes import FAMILIES, generate
from operators.prose.cli import load_data_config, make_data
from operators.prose.dataset import load_dataset, target_tokens
from operators.prose.tokens import tokenize
from tests.conftest import assert_clean_error, run_cli
from workbench.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "jobs" / "configs" / "prose_data_tiny.yaml")
PAPER = str(ROOT / "jobs" / "configs" / "prose_data_paper.yaml")
# A small build: 3 families x 30 train (shards of 40: 40, 40, 10) and x 8 val (one shard of 24).
SMALL = ["n_per_family=30", "val_per_family=8", "shard_size=40"]
ARRAYS = ("clean", "noisy", "y0", "dim", "family", "params", "index")


def _build(out, *extra, executor="debug"):
    config = load_data_config(TINY, [f"out={out}", *SMALL, *extra])
    return config, make_data(config, executor)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("prose") / "data"
    config, summary = _build(out)
    return out, config, summary


def test_configs_load_and_follow_the_official_code():
    tiny = load_data_config(TINY)
    assert tiny.family_names == ("lorenz_3d", "rossler", "sprott_B") and tiny.engine == "batched"
    paper = load_data_config(PAPER)
    # Official defaults: 512 000 train and 25 600 val samples, over the chaotic_ode_3d preset (12 families).
    assert len(paper.family_names) == 12
    assert abs(paper.n_per_family * 12 - 512_000) < 12 and abs(paper.val_per_family * 12 - 25_600) < 12
    assert paper.job.cpus_per_task == paper.workers and paper.job.gpus_per_node == 0


def test_make_data_in_process_matches_generate(built):
    out, config, summary = built
    assert summary["built"] == ["shard-00000", "shard-00001", "shard-00002", "val-00000"]
    assert summary["skipped"] == 0 and summary["trajectories_per_s"] > 0
    train = load_dataset(out)
    # The train split is generate()'s sample stream: same seeds (child i of SeedSequence(seed)),
    # same round-robin order, same engine.
    ref = generate(config.family_names, 30, seed=config.seed, engine="batched")
    for key in ("params", "y0", "family", "dim"):
        np.testing.assert_array_equal(train[key], ref[key], err_msg=key)
    # Shards batch different members together; each member's arithmetic is its own, so the
    # trajectories agree to rounding (they are in fact identical on this machine).
    np.testing.assert_allclose(train["clean"], ref["clean"], rtol=1e-12, atol=1e-12)
    assert train["families"] == ref["families"] and train["rejected"] == ref["rejected"]
    np.testing.assert_array_equal(train["t"], ref["t"])
    assert train["seed"] == config.seed and train["split"] == "train"
    assert len(train["tokens"]) == len(train["family"])
    for i in (0, 1, 2, len(train["family"]) - 1):
        fam = FAMILIES[train["families"][train["family"][i]]]
        assert train["tokens"][i] == tokenize(fam.expressions(train["params"][i, : len(fam.params)]))


def test_val_split_follows_train_in_the_stream(built):
    out, config, _ = built
    val = load_dataset(out, split="val")
    n_train = 30 * 3
    assert val["index"].min() >= n_train and len(val["family"]) <= 24 and len(val["tokens"]) == len(val["family"])
    ref = generate(config.family_names, 30 + 8, seed=config.seed, engine="batched")
    np.testing.assert_array_equal(val["params"], ref["params"][-len(val["family"]) :])
    manifest = json.loads((out / "manifest.json").read_text())
    train_shards = [s for s in manifest["shards"] if s["split"] == "train"]
    assert [(s["start"], s["stop"]) for s in train_shards] == [(0, 40), (40, 80), (80, 90)]
    assert manifest["n"] == {"train": sum(s["samples"] for s in train_shards), "val": len(val["family"])}
    assert manifest["n"]["train"] == len(load_dataset(out)["family"])
    assert manifest["d_max"] == 3 and manifest["vocabulary_max_dim"] == 3 and len(manifest["t"]) == 192
    with pytest.raises(InputError, match="unknown split"):
        load_dataset(out, split="test")


def test_rerun_resumes_only_missing_shards_bit_identical(built, tmp_path):
    out, config, _ = built
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(out, copy)
    before = load_dataset(copy)
    (copy / "shard-00001.npz").unlink()
    _, summary = _build(copy)
    assert summary["built"] == ["shard-00001"] and summary["skipped"] == 3
    after = load_dataset(copy)
    for key in ARRAYS:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert after["tokens"] == before["tokens"]
    _, summary = _build(copy)  # nothing left to do
    assert summary["built"] == [] and summary["skipped"] == 4
    # A rerun with different data settings into the same directory is refused, naming them.
    with pytest.raises(InputError, match="different seed"):
        _build(copy, "seed=5")


def test_data_of_an_earlier_format_are_refused_for_reading_and_resuming(built, tmp_path):
    """Format 1 tokenised sympy's factored targets: such a directory is neither read nor resumed
    (shards of two formats would mix)."""
    out, _, _ = built
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    for name in ("manifest.json", "plan.json"):
        record = json.loads((copy / name).read_text())
        record["format"] = 1
        (copy / name).write_text(json.dumps(record))
    with pytest.raises(InputError, match="holds PROSE data of format 1, this version reads and writes format 2"):
        load_dataset(copy)
    (copy / "shard-00001.npz").unlink()
    with pytest.raises(InputError, match="format 1"):
        _build(copy)


def test_make_data_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    args = ["prose", "make-data", TINY, "--set", f"out={out}", *[x for s in SMALL for x in ("--set", s)]]
    result = run_cli(*args, "--executor", "local", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 0 and len(summary["built"]) == 4 and summary["executor"] == "local"
    assert "make-data" in result.stderr  # the progress line goes to stderr
    data = load_dataset(out)
    assert data["clean"].shape == (summary["samples"]["train"], 192, 3)
    check = run_cli(*args, "--check")
    assert check.returncode == 0 and "complete" in check.stdout
    again = run_cli(*args, "--executor", "debug")
    assert again.returncode == 0 and "built 0 shard(s), skipped 4" in again.stdout


def test_missing_or_truncated_shard_is_a_clean_error(built, tmp_path):
    out, _, _ = built
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(out, copy)
    (copy / "shard-00002.npz").unlink()
    args = ["prose", "make-data", TINY, "--set", f"out={copy}", *[x for s in SMALL for x in ("--set", s)]]
    assert_clean_error(run_cli(*args, "--check"), "shard-00002.npz", "missing", "make-data")
    with pytest.raises(InputError, match=r"shard-00002\.npz is missing; rerun"):
        load_dataset(copy)
    data = (out / "val-00000.npz").read_bytes()
    (copy / "val-00000.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"val-00000\.npz is truncated"):
        load_dataset(copy, split="val")
    lines = (out / "shard-00000.tokens.jsonl").read_text().splitlines()
    (copy / "shard-00000.tokens.jsonl").write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(InputError, match=r"shard-00000\.tokens\.jsonl has 5 lines"):
        load_dataset(copy)


def test_wrong_path_or_no_manifest(tmp_path):
    with pytest.raises(InputError, match="no such data directory"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no manifest.json"):
        load_dataset(tmp_path)
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(InputError, match="unfinished make-data build"):
        load_dataset(tmp_path)


def test_bad_configs_exit_2_naming_the_key(tmp_path):
    result = run_cli("prose", "make-data", TINY, "--set", "families=[lorenz,rossler]", "--set", f"out={tmp_path}")
    assert_clean_error(result, "families", "'lorenz'")
    result = run_cli("prose", "make-data", TINY, "--set", "n_per_fam=3")
    assert_clean_error(result, "n_per_fam", "n_per_family")
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(TINY).read_text() + "solver: rk4\n")
    assert_clean_error(run_cli("prose", "make-data", str(bad)), "unknown key 'solver'", str(bad))
    assert_clean_error(run_cli("prose", "make-data", TINY, "--set", "engine=rk4"), "engine", "batched")
    assert not any(tmp_path.glob("*.npz"))
    with pytest.raises(ConfigError, match="shard_size"):
        load_data_config(TINY, ["shard_size=0"])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_fast_target_tokens_equal_tokenize_of_expressions(name):
    fam = FAMILIES[name]
    rng = np.random.default_rng(4)
    for _ in range(5):
        p = fam.sample_params(rng)
        assert target_tokens(fam, p) == tokenize(fam.expressions(p))
        assert all(isinstance(e, sympy.Expr) for e in fam.expressions(p))


def test_bench_prose_quick_runs_and_engines_agree():
    pytest.importorskip("torch")
    from operators.prose import bench

    result = bench.run(quick=True)
    d = result["data"]
    assert set(d["trajectories_per_s"]) == {"solve_ivp", "batched", "batched_workers2"}
    assert d["engines_agree"] and d["same_draws_fraction"] == 1.0 and d["max_rel_diff_t_le_1"] < 1e-2
    assert result["same_optimum"] is True
    tiny = result["train"]["models"]["tiny"]
    assert tiny["samples_per_s"] > 0 and tiny["params"] > 0
    text = bench.format_result(result)
    assert "batched DOPRI5" in text and "ProseModel training step" in text
