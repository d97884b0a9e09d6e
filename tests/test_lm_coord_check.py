"""Coordinate check (mup's invariance test, TP5 §D): activations flat in width under muP only."""

import json
from types import SimpleNamespace

import pytest

from tests.conftest import assert_clean_error, run_cli
from workbench.cli import main
from workbench.lm import cli as lm_cli
from workbench.lm.coord_check import HIDDEN_MODULES, VARIANTS, coord_check

WIDTHS = (32, 64, 128, 256)  # 8x range; the smallest is the muP base width
LIMIT = 0.15  # |log-log slope| for hidden/residual modules: l1(8w)/l1(w) within ±37 %


@pytest.fixture(scope="module")
def result():
    # 5 variants x 4 widths x 3 seeds x 4 Adam steps at lr 1e-2, seq 16, depth 2: ~12 s on 2 CPU cores.
    slopes, data = coord_check(WIDTHS)
    return slopes, data


def test_mup_hidden_activations_are_flat_in_width(result):
    slopes, _ = result
    for module in HIDDEN_MODULES:
        assert abs(slopes["mup"][module]) <= LIMIT, (module, slopes["mup"])
    # Readout logits: a looser 0.25, since they may shrink ~1/sqrt(width) early unless zero-initialised.
    assert abs(slopes["mup"]["logits"]) <= 0.25
    assert abs(slopes["mup"]["embedding"]) <= LIMIT


@pytest.mark.parametrize("control", ["sp", "mup-torch-adamw", "mup-no-reinit", "mup-bad-delta"])
def test_each_negative_control_grows_with_width(result, control):
    slopes, _ = result
    worst = max(abs(slopes[control][m]) for m in HIDDEN_MODULES)
    # Measured ~0.5-2: far outside the muP band, so the check can tell them apart.
    assert worst > 2 * LIMIT, slopes[control]


def test_data_has_one_value_per_seed_width_step_module(result):
    _, data = result
    assert data["mup"].shape == (3, len(WIDTHS), 5, 5)
    assert (data["mup"][:, :, 0, -1] == 0).all()  # zero readout: logits exactly 0 at init
    assert (data["mup"][:, :, -1] > 0).all()


def test_cli_variants_match_the_module():
    assert lm_cli.VARIANTS == VARIANTS


def test_cli_json_has_mup_and_sp_slopes_and_writes_a_plot(tmp_path):
    plot = tmp_path / "coord.png"
    out = run_cli("lm", "coord-check", "--variants", "mup,sp", "--widths", "32,256", "--seeds", "1", "--steps", "2",
                  "--json", "--plot", str(plot))  # fmt: skip
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert set(payload) == {"mup", "sp"}
    assert set(payload["mup"]) == {"embedding", "attn_out", "mlp_hidden", "mlp_out", "logits"}
    assert all(isinstance(v, float) for v in payload["sp"].values())
    assert plot.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--widths", "30,60"], "multiple of --head-dim"),
        (["--widths", "64,32"], "increasing"),
        (["--variants", "mup,bogus"], "bogus"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, fragment, capsys):
    # In-process (no fresh interpreter per case): the errors come before any model is built.
    code = main(["lm", "coord-check", *args])
    captured = capsys.readouterr()
    assert_clean_error(SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err), fragment)
