"""Tests for workbench.store: atomic writes, run directories, sweep combining, manifests."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import xarray as xr

from workbench.errors import InputError
from workbench.store import (
    RunDir,
    TornRecordWarning,
    append_manifest,
    atomic_write_json,
    atomic_write_netcdf,
    atomic_write_text,
    combine_runs,
    create_run_dir,
    open_dataset,
    read_manifest,
    with_sweep_dims,
)


def metrics(n_steps: int, offset: float = 0.0) -> xr.Dataset:
    """A run's metrics: loss per step plus job metadata as scalar data variables."""
    step = np.arange(n_steps) * 10
    return xr.Dataset(
        {"loss": ("step", 1.0 / (1 + np.arange(n_steps)) + offset), "seed": ((), 7)}, coords={"step": step}
    )


def run(width: int, lr: float, n_steps: int = 4) -> xr.Dataset:
    # The loss encodes the sweep point, so a value found in the wrong grid cell is caught.
    return with_sweep_dims(metrics(n_steps, offset=width + lr), {"width": width, "lr": lr})


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_and_json(tmp_path):
    path = tmp_path / "a" / "b" / "note.txt"  # parents are created
    atomic_write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": [1, 2], "b": 1}
    assert text.index('"a"') < text.index('"b"')  # sort_keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "x.json"]  # no temp files left


def test_atomic_write_gives_normal_permissions(tmp_path):
    # mkstemp makes 0600 files; results must get the umask's usual mode so collaborators can
    # read them.
    from workbench import atomic

    atomic_write_text(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK


def test_atomic_write_json_failure_keeps_old_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_netcdf_round_trip(tmp_path):
    ds = run(64, 0.1)
    path = tmp_path / "runs" / "metrics.nc"
    atomic_write_netcdf(ds, path)
    back = open_dataset(path)
    xr.testing.assert_identical(back, ds)


def test_netcdf_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "metrics.nc"
    old = run(64, 0.1)
    atomic_write_netcdf(old, path)
    old_bytes = path.read_bytes()

    def half_write_then_fail(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"partial garbage")
        raise RuntimeError("node died mid-write")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_write_then_fail)
    with pytest.raises(RuntimeError, match="node died"):
        atomic_write_netcdf(run(128, 0.2), path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.nc"]
    xr.testing.assert_identical(open_dataset(path), old)


def test_netcdf_unstorable_attrs_are_converted_on_a_copy(tmp_path):
    ds = metrics(3)
    attrs = {
        "flag": True,
        "nothing": None,
        "opts": {"b": 1, "a": [1, 2]},
        "mixed": [1, "a"],
        "flags": [True, False],
        "names": ["a", "b"],
        "n": 3,
    }
    ds.attrs.update(attrs)
    ds["loss"].attrs["done"] = False
    ds["step"].attrs["meta"] = {"unit": "step"}

    atomic_write_netcdf(ds, tmp_path / "m.nc")
    back = open_dataset(tmp_path / "m.nc")
    assert back.attrs["flag"] == 1
    assert back.attrs["nothing"] == ""
    assert json.loads(back.attrs["opts"]) == {"a": [1, 2], "b": 1}
    assert json.loads(back.attrs["mixed"]) == [1, "a"]
    assert list(back.attrs["flags"]) == [1, 0]
    assert list(back.attrs["names"]) == ["a", "b"]
    assert back.attrs["n"] == 3
    assert back["loss"].attrs["done"] == 0
    assert json.loads(back["step"].attrs["meta"]) == {"unit": "step"}
    # The caller's Dataset is untouched.
    assert ds.attrs == attrs
    assert ds["loss"].attrs == {"done": False}
    assert ds["step"].attrs == {"meta": {"unit": "step"}}


def test_open_dataset_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="not found: .*nope.nc"):
        open_dataset(tmp_path / "nope.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(InputError, match="junk.nc"):
        open_dataset(junk)


def test_open_dataset_releases_the_file(tmp_path):
    path = tmp_path / "m.nc"
    atomic_write_netcdf(run(1, 0.1), path)
    first = open_dataset(path)
    # HDF5 refuses to truncate a file that is still open, so writing in place proves it closed.
    run(2, 0.2).to_netcdf(path, engine="h5netcdf")
    assert first["width"].item() == 1  # the data was loaded before the file closed
    assert open_dataset(path)["width"].item() == 2


# ----------------------------------------------------------------------------- run dirs


@dataclass(frozen=True)
class Job:
    lr: float = 1e-3
    widths: tuple[int, ...] = field(default=(1, 2))


def test_create_run_dir_layout_and_config(tmp_path):
    rd = create_run_dir(tmp_path, "sweep1", "w64-lr0.1", config=Job())
    assert isinstance(rd, RunDir)
    assert rd.path == tmp_path / "sweep1" / "w64-lr0.1"
    assert rd.config_path == rd.path / "config.json"
    assert rd.metrics_path == rd.path / "metrics.nc"
    assert rd.checkpoints.is_dir() and rd.logs.is_dir()
    assert rd.manifest_path == tmp_path / "sweep1" / "manifest.jsonl"
    assert json.loads(rd.config_path.read_text()) == {"lr": 1e-3, "widths": [1, 2]}


def test_create_run_dir_resume_same_config_ok_different_config_rejected(tmp_path):
    create_run_dir(tmp_path, "e", "r", config=Job())
    create_run_dir(tmp_path, "e", "r", config=Job())  # a resume
    with pytest.raises(InputError, match=r"different config .*lr"):
        create_run_dir(tmp_path, "e", "r", config=Job(lr=0.5))
    assert json.loads((tmp_path / "e" / "r" / "config.json").read_text())["lr"] == 1e-3


def test_a_run_made_before_a_field_existed_resumes_when_the_field_is_at_its_default(tmp_path):
    """Upgrading the workbench must not orphan its runs: a config.json without a field that a later
    version added (here `train.loggers`) is the same config while the field keeps its default."""
    from workbench.train import TrainConfig

    @dataclass(frozen=True)
    class Run:
        lr: float = 1e-3
        train: TrainConfig = TrainConfig()

    run = create_run_dir(tmp_path, "e", "r", config=Run())
    old = json.loads(run.config_path.read_text())
    del old["train"]["loggers"]
    run.config_path.write_text(json.dumps(old))
    create_run_dir(tmp_path, "e", "r", config=Run())  # resumes
    with pytest.raises(InputError, match=r"different config \(keys differ: train\)"):
        create_run_dir(tmp_path, "e", "r", config=Run(train=TrainConfig(loggers=("csv", "tensorboard"))))
    with pytest.raises(InputError, match=r"keys differ: lr"):
        create_run_dir(tmp_path, "e", "r", config=Run(lr=0.5))


def test_create_run_dir_without_config(tmp_path):
    rd = create_run_dir(tmp_path, "e", "r")
    assert rd.path.is_dir() and not rd.config_path.exists()


@pytest.mark.parametrize(
    "bad", ["a/b", "..", "a..b", "a b", "x;rm", "$(x)", "", "-rf", ".hidden", "a\\b", "tab\t", "a*", "a|b", "a'b"]
)
def test_create_run_dir_rejects_unsafe_names(tmp_path, bad):
    with pytest.raises(InputError, match="invalid run id"):
        create_run_dir(tmp_path, "exp", bad)
    with pytest.raises(InputError, match="invalid experiment name"):
        create_run_dir(tmp_path, bad, "run")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- sweeps


def test_with_sweep_dims_adds_length_one_dims_to_every_variable():
    ds = with_sweep_dims(metrics(4), {"width": 256, "lr": 1e-3})
    assert ds.sizes["width"] == 1 and ds.sizes["lr"] == 1
    assert ds["loss"].dims == ("width", "lr", "step")
    assert ds["seed"].dims == ("width", "lr")  # job metadata is a data variable over the sweep
    assert ds["width"].item() == 256 and ds["lr"].item() == 1e-3


def test_with_sweep_dims_rejects_clashes_and_non_scalars():
    with pytest.raises(InputError, match="'step' clashes"):
        with_sweep_dims(metrics(2), {"step": 1})
    with pytest.raises(InputError, match="'seed' clashes"):
        with_sweep_dims(metrics(2), {"seed": 1})
    with pytest.raises(InputError, match="'width' must be a number"):
        with_sweep_dims(metrics(2), {"width": [1, 2]})


def test_combine_full_grid(tmp_path):
    paths = []
    for w in (64, 128):
        for lr in (0.1, 0.01):
            path = tmp_path / f"w{w}-lr{lr}" / "metrics.nc"
            atomic_write_netcdf(run(w, lr), path)
            paths.append(path)
    combined = combine_runs(paths)
    assert dict(combined.sizes) == {"width": 2, "lr": 2, "step": 4}
    assert combined["loss"].dims == ("width", "lr", "step")
    assert not combined["loss"].isnull().any()
    for w in (64, 128):
        for lr in (0.1, 0.01):
            np.testing.assert_allclose(
                combined["loss"].sel(width=w, lr=lr), run(w, lr)["loss"].squeeze(["width", "lr"])
            )


def test_combine_grid_with_missing_member_is_nan_there_only():
    runs = [run(w, lr) for w in (64, 128) for lr in (0.1, 0.01) if (w, lr) != (128, 0.01)]
    combined = combine_runs(runs)
    assert dict(combined.sizes) == {"width": 2, "lr": 2, "step": 4}
    assert combined["loss"].sel(width=128, lr=0.01).isnull().all()
    assert np.isnan(combined["seed"].sel(width=128, lr=0.01))
    for w, lr in [(64, 0.1), (64, 0.01), (128, 0.1)]:
        np.testing.assert_allclose(combined["loss"].sel(width=w, lr=lr), run(w, lr)["loss"].squeeze(["width", "lr"]))
        assert combined["seed"].sel(width=w, lr=lr) == 7


def test_combine_pads_shorter_runs_with_nan():
    combined = combine_runs([run(64, 0.1, n_steps=5), run(128, 0.1, n_steps=2)])
    assert list(combined["step"].values) == [0, 10, 20, 30, 40]
    short = combined["loss"].sel(width=128, lr=0.1)
    assert not short.isel(step=slice(0, 2)).isnull().any()
    assert short.isel(step=slice(2, None)).isnull().all()
    assert not combined["loss"].sel(width=64, lr=0.1).isnull().any()


def test_combine_runs_errors():
    with pytest.raises(InputError, match="no runs"):
        combine_runs([])
    with pytest.raises(InputError, match="same sweep point width=64, lr=0.1"):
        combine_runs([run(64, 0.1), run(64, 0.1), run(128, 0.1)])
    with pytest.raises(InputError, match="lacks dimension"):
        combine_runs([run(64, 0.1), with_sweep_dims(metrics(4), {"width": 32})])
    with pytest.raises(InputError, match="no length-1 sweep dimensions"):
        combine_runs([metrics(4), metrics(4)])


def test_combine_runs_keeps_agreeing_attrs():
    a, b = run(1, 0.1), run(2, 0.1)
    a.attrs.update(model="mlp", seed_note="a")
    b.attrs.update(model="mlp", seed_note="b")
    combined = combine_runs([a, b])
    assert combined.attrs == {"model": "mlp"}


# ----------------------------------------------------------------------------- manifest


def test_manifest_round_trip(tmp_path):
    path = tmp_path / "sweep" / "manifest.jsonl"
    records = [
        {"run_id": "a", "status": "done", "loss": 0.5},
        {"run_id": "b", "status": "failed", "error": "line1\nline2"},
    ]
    for record in records:
        append_manifest(path, record)
    assert read_manifest(path) == records
    assert len(path.read_text().splitlines()) == 2


def test_manifest_recovers_from_torn_line_and_reports_it(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_manifest(path, {"run_id": "a"})
    with open(path, "a") as f:
        f.write('{"run_id": "b", "sta')  # a writer died mid-line
    append_manifest(path, {"run_id": "c"})
    assert path.read_text().splitlines()[-1] == '{"run_id": "c"}'  # not glued to the torn line
    with pytest.warns(TornRecordWarning, match=r"manifest.jsonl line 2 is torn"):
        assert read_manifest(path) == [{"run_id": "a"}, {"run_id": "c"}]  # every intact record kept


def test_read_manifest_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n{"b": 2}\n')
    with pytest.warns(TornRecordWarning, match=r"m.jsonl line 3 is not a JSON object"):
        assert read_manifest(path) == [{"a": 1}, {"b": 2}]
