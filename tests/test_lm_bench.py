"""`workbench bench lm`: the muP-vs-plain-PyTorch step benchmark runs and reports sensible numbers."""

import json

import pytest

from tests.conftest import run_cli

torch = pytest.importorskip("torch")

from workbench.lm import bench  # noqa: E402


def test_flops_per_token_is_nanogpt_estimate_for_gpt2_small():
    # nanoGPT's estimate_mfu for the 124M model at T = 1024: 6N + 12·L·d·T, N = 123.6M.
    shape = bench.GPU_SHAPE
    n = 123_653_376
    assert bench.flops_per_token(n, shape) == pytest.approx(0.855e9, rel=0.01)


def test_quick_cpu_benchmark_compares_mup_with_plain_pytorch():
    result = bench.run(quick=True)
    for par in ("mup", "sp"):
        r = result[par]
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0 and r["mfu"] is None  # no peak known on a CPU
    # Same architecture: the muP and plain models have exactly the same parameter count.
    assert result["mup"]["params"] == result["sp"]["params"]
    assert len(result["overhead_rounds"]) == result["rounds"]
    assert -0.9 < result["mup_overhead"] < 10  # a ratio of two positive times, not a pass/fail speed bound
    text = bench.format_result(result)
    assert "muP overhead vs plain PyTorch" in text and "plain PyTorch" in text


def test_bench_lm_cli_rejects_cuda_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal is for machines without one")
    result = run_cli("bench", "lm", "--device", "cuda")
    assert result.returncode == 2 and "no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_lm_cli_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "lm", "--quick", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text())["mup"]["params"] == printed["mup"]["params"]
