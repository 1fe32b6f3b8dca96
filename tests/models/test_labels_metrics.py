"""Label pseudonymisation/join and metrics against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

from medpipe.deid import pseudonym
from medpipe.errors import ConfigError
from medpipe.models import labels as lab
from medpipe.models import metrics as met

from .conftest import SECRET


def _table(n: int = 4) -> xr.Dataset:
    return xr.Dataset(
        {"features": (("sample", "feature"), np.zeros((n, 2)))},
        coords={
            "sample": [f"s{i}" for i in range(n)],
            "series_uid": ("sample", [pseudonym(f"1.2.{i}", secret=SECRET, kind="series")
                                      for i in range(n)]),
            "study": ("sample", [pseudonym("9.9", secret=SECRET, kind="study")] * n),
            "patient": ("sample", [pseudonym(f"P{i // 2}", secret=SECRET, kind="patient")
                                   for i in range(n)]),
        },
    )


@pytest.mark.parametrize(
    ("column", "kind", "values"),
    [("SeriesInstanceUID", "series", ["1.2.0", "1.2.1"]), ("PatientID", "patient", ["P0", "P1"]),
     ("StudyInstanceUID", "study", ["9.9", "9.8"])],
)
def test_read_labels_pseudonymises(tmp_path: Path, column: str, kind: str, values: list) -> None:
    path = tmp_path / "labels.csv"
    pd.DataFrame({column: values, "label": [1, 0], "split": ["train", "VAL"]}).to_csv(path,
                                                                                       index=False)
    got = lab.read_labels(path, secret=SECRET)
    assert set(got["kind"]) == {kind}
    expected = {pseudonym(v, secret=SECRET, kind=kind): lbl for v, lbl in zip(values, [1, 0],
                                                                              strict=True)}
    assert dict(zip(got["key"], got["label"], strict=True)) == expected
    assert set(got["split"]) == {"train", "val"}
    # the raw identifiers never reach the store
    stored = lab.write_labels(str(tmp_path / "s.zarr"), got)
    raw = (tmp_path / "s.zarr" / stored).read_bytes()
    assert not any(v.encode() in raw for v in values)
    pd.testing.assert_frame_equal(lab.read_stored_labels(str(tmp_path / "s.zarr"), stored), got)


def test_join_labels_by_series_patient_and_study(tmp_path: Path) -> None:
    table = _table()
    by_patient = pd.DataFrame({"PatientID": ["P0", "P1"], "label": [1, 0]})
    by_patient.to_parquet(tmp_path / "p.parquet")
    joined = lab.join_labels(table, lab.read_labels(tmp_path / "p.parquet", secret=SECRET))
    np.testing.assert_array_equal(joined["label"].values, [1, 1, 0, 0])
    assert list(joined["split"].values) == [""] * 4
    pd.DataFrame({"SeriesInstanceUID": ["1.2.3"], "label": [1], "split": ["val"]}).to_csv(
        tmp_path / "s.csv", index=False)
    joined = lab.join_labels(table, lab.read_labels(tmp_path / "s.csv", secret=SECRET))
    np.testing.assert_array_equal(joined["label"].values, [np.nan, np.nan, np.nan, 1])
    assert joined["split"].values[3] == "val"
    pd.DataFrame({"StudyInstanceUID": ["9.9"], "label": [0]}).to_csv(tmp_path / "t.csv",
                                                                     index=False)
    joined = lab.join_labels(table, lab.read_labels(tmp_path / "t.csv", secret=SECRET))
    np.testing.assert_array_equal(joined["label"].values, [0, 0, 0, 0])


def test_bad_label_files(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    pd.DataFrame({"uid": ["1"], "label": [1]}).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="key column"):
        lab.read_labels(p, secret=SECRET)
    pd.DataFrame({"PatientID": ["1", "2"], "label": [1, 2]}).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="0 or 1"):
        lab.read_labels(p, secret=SECRET)
    pd.DataFrame({"PatientID": ["1", "1"], "label": [1, 0]}).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="both labels"):
        lab.read_labels(p, secret=SECRET)
    with pytest.raises(ConfigError, match="not found"):
        lab.read_labels(tmp_path / "missing.csv", secret=SECRET)


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    m = met.binary_metrics(y, p, n_boot=300, seed=0)
    pred = (p >= 0.5).astype(int)
    ref = {
        "auc": roc_auc_score(y, p),
        "accuracy": accuracy_score(y, pred),
        "sensitivity": recall_score(y, pred),
        "specificity": recall_score(1 - y, 1 - pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
    }
    for k, v in ref.items():
        assert m[k]["value"] == pytest.approx(v)
        assert m[k]["ci_low"] < v < m[k]["ci_high"]
    # a larger sample gives a narrower interval
    y4, p4 = np.tile(y, 4), np.tile(p, 4)
    m4 = met.binary_metrics(y4, p4, n_boot=300, seed=0)
    assert (m4["auc"]["ci_high"] - m4["auc"]["ci_low"]) < (m["auc"]["ci_high"]
                                                           - m["auc"]["ci_low"])
    perfect = met.binary_metrics(y, y.astype(float), n_boot=50)
    assert perfect["auc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert met.format_metric("auc", {"value": 0.9123, "ci_low": 0.871, "ci_high": 0.951}) == (
        "AUC 0.912 (95% CI 0.87-0.95)"
    )
    c = met.confusion(y, p)
    assert c["tp"] + c["fn"] == y.sum() and c["tn"] + c["fp"] == (1 - y).sum()
    png = met.roc_png(y, p)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_youden_threshold_maximises_balanced_accuracy() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.6 * y + rng.random(200) * 0.6, 0, 1)
    thr = met.youden_threshold(y, p)
    best = max(balanced_accuracy_score(y, (p >= t).astype(int)) for t in np.unique(p))
    assert balanced_accuracy_score(y, (p >= thr).astype(int)) == pytest.approx(best)
    assert met.youden_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5
