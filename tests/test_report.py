"""The QA report: PSI/KS drift of every feature against the training set, quantile-clipped
plots, the model's ROC and calibration, ``medpipe report``, and no report on a night
without changes.  The store is real: two MedMNIST-style batches cut from pydicom's real
MR/CT slices are ingested one after the other (the second with another contrast: a drift), with
features, a trained, evaluated model and its scores."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss

from medpipe import catalog, ingest, report
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group, open_features, update_features
from medpipe.models import labels as lab
from medpipe.models.train import evaluate_model, open_scores, score_model, train_model
from medpipe.report.figures import clipped_range
from medpipe.results import ModelStageResult, TrainResult
from medpipe.sample import build_medmnist_archive

from .models.conftest import real_patches

SECRET = b"report-test-secret"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ------------------------------------------------------------------ PSI and KS alone


def test_psi_hand_checkable_case() -> None:
    # reference 0..9 on 2 bins split at its median 4.5: shares 1/2, 1/2; current 3/4, 1/4
    # PSI = (3/4-1/2) ln(3/2) + (1/4-1/2) ln(1/2) = ln(3)/4
    assert report.psi(np.arange(10), [0, 0, 0, 9], bins=2) == pytest.approx(np.log(3) / 4)
    assert report.psi(np.arange(10), np.arange(10)) == 0.0
    assert np.isnan(report.psi([1.0], [1.0, 2.0]))


def _psi_numpy(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Independent PSI: decile edges of the reference, counted with np.histogram."""
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    lo = min(ref.min(), cur.min()) - 1
    hi = max(ref.max(), cur.max()) + 1
    edges = np.concatenate([[lo], inner, [hi]])
    p = np.maximum(np.histogram(ref, edges)[0] / ref.size, eps)
    q = np.maximum(np.histogram(cur, edges)[0] / cur.size, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def test_psi_and_ks_against_independent_computations() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 3))
    cur = np.column_stack([rng.normal(size=60), rng.normal(0.8, 1, 60), rng.normal(size=60)])
    cur[5, 2] = np.nan
    rows = report.drift_table(cur, ref, ["same", "shifted", "with_nan"], threshold=0.2)
    by = {r.feature: r for r in rows}
    assert rows[0].feature == "shifted" and by["shifted"].flagged and not by["same"].flagged
    for j, name in enumerate(["same", "shifted", "with_nan"]):
        c = cur[:, j][np.isfinite(cur[:, j])]
        assert by[name].psi == pytest.approx(_psi_numpy(ref[:, j], cur[:, j]), rel=1e-12)
        ks = ks_2samp(c, ref[:, j])
        assert (by[name].ks, by[name].ks_pvalue) == pytest.approx((ks.statistic, ks.pvalue))
        assert by[name].n_current == c.size
    assert by["shifted"].psi > 0.2 > by["same"].psi


def test_clipped_range_ignores_one_extreme_value() -> None:
    v = np.concatenate([np.linspace(0, 1, 200), [1e9, np.nan]])
    lo, hi = clipped_range(v)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(v[np.isfinite(v)], [0.01, 0.99])))
    assert hi < 2
    assert clipped_range(np.ones(5)) == (0.5, 1.5)


def test_a_night_without_changes_writes_no_report() -> None:
    idle = ModelStageResult(name="m", version="v1")
    assert not report.needs_report(any_work=False, model=idle)
    assert report.needs_report(any_work=True, model=idle)
    assert report.needs_report(any_work=False, model=ModelStageResult(name="m", scored=3))
    trained = TrainResult(name="m", version="v2", estimator="logreg", cv_auc=0.5, metrics={},
                          n_train=1)
    assert report.needs_report(any_work=False, model=ModelStageResult(name="m", trained=trained))
    md = report.nightly_markdown(
        ingest.IngestSummary(run_id="r", scanned=3, unchanged=3), {}, idle, report=None, url=None
    )
    assert "no QA report" in md


# ---------------------------------------------------------------- a real store, twice


def _batch(root: Path, name: str, *, seed: int, gamma: float = 1.0) -> Path:
    xt, yt = real_patches(40, seed=seed)
    xv, yv = real_patches(20, seed=seed + 1)
    if gamma != 1.0:  # another scanner's contrast: skewness, entropy... shift
        xt = (255 * (xt / 255.0) ** gamma).astype(np.uint8)
        xv = (255 * (xv / 255.0) ** gamma).astype(np.uint8)
    npz = root / f"{name}.npz"
    np.savez(npz, train_images=xt, train_labels=yt[:, None], val_images=xv,
             val_labels=yv[:, None])
    return build_medmnist_archive(npz, root / "archive" / name, name="breastmnist", seed=seed)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("qa")
    store = str(root / "store.zarr")
    first = _batch(root, "b1", seed=0)
    cfg = FeatureConfig(families=("histogram", "firstorder"))
    ingest.ingest_archive(str(root / "archive"), store, secret=SECRET)
    update_features(store, config=cfg)
    group = features_group(cfg)
    train_model(store, name="qa", features=group, labels=first / "labels.csv", secret=SECRET,
                estimator="logreg", n_splits=3, n_boot=50)
    evaluate_model(store, model="qa", split="val", n_boot=50)
    second = _batch(root, "b2", seed=11, gamma=3.0)
    run2 = ingest.ingest_archive(str(root / "archive"), store, secret=SECRET).run_id
    update_features(store, config=cfg)
    score_model(store, model="qa")
    return {"root": root, "store": store, "group": group, "run2": run2,
            "first": first, "second": second}


def _independent_drift(store: str, group: str, run: str) -> tuple[set[str], dict]:
    """Flags computed here from the store: catalog → new series, model.json → training rows."""
    from medpipe.models import registry as reg

    rows = catalog.read_catalog(store)
    new = set(rows[(rows["run_id"] == run) & (rows["status"] == "ingested")]["series"])
    meta = reg.read_model_json(store, "qa")
    table = open_features(store, group)
    joined = lab.join_labels(table, lab.read_stored_labels(store, meta["labels"]["path"]))
    train = np.array([str(s) == "train" for s in joined["split"].values])
    train &= np.isfinite(joined["label"].values)
    is_new = np.array([str(s) in new for s in table["series"].values])
    values = np.asarray(table["features"].values, dtype=float)
    psis = {str(n): _psi_numpy(values[train, j], values[is_new, j])
            for j, n in enumerate(table["feature"].values)}
    return {n for n, v in psis.items() if v >= 0.05}, {"new": new, "values": values,
                                                      "train": train, "is_new": is_new,
                                                      "names": list(psis)}


def _secrets_of(folder: Path) -> set[str]:
    out = set()
    for f in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for tag in ("PatientName", "PatientID", "AccessionNumber", "InstitutionName"):
            if str(ds.get(tag, "")).strip():
                out.add(str(ds.get(tag)))
        out.add(f.name)
    return out


def test_report_of_the_latest_run(two_runs: dict) -> None:
    store, group, run2 = two_runs["store"], two_runs["group"], two_runs["run2"]
    # default: the latest run, the ingest of b2; a low threshold flags some features
    path, rep = report.write_report(store, threshold=0.05)
    assert path == f"reports/{run2}/index.html"
    flagged, ind = _independent_drift(store, group, run2)
    assert set(rep.context.new_series) == ind["new"] and len(ind["new"]) == 60
    assert flagged and {d.feature for d in rep.flagged} == flagged
    assert len(flagged) < len(ind["names"])
    assert len(rep.drift) == len(ind["names"])  # every feature, not six
    assert rep.reference == f"the {int(ind['train'].sum())} training rows of model qa:v1"
    j = ind["names"].index(rep.drift[0].feature)
    cur = ind["values"][ind["is_new"], j]
    ref = ind["values"][ind["train"], j]
    assert rep.drift[0].ks == pytest.approx(ks_2samp(cur, ref).statistic)
    # plotted ranges are the 1-99 % quantiles of both samples, not min..max
    lo, hi = rep.ranges[rep.drift[0].feature]
    both = np.concatenate([cur, ref])
    assert (lo, hi) == pytest.approx(tuple(np.quantile(both, [0.01, 0.99])))
    assert hi < both.max() or lo > both.min()
    # calibration from the score table and the labels of the held-out (val) rows
    scores = lab.join_labels(open_scores(store, "scores/qa/v1"),
                             lab.read_labels(two_runs["first"] / "labels.csv", secret=SECRET))
    val = np.array([str(s) == "val" for s in scores["split"].values])
    assert rep.brier == pytest.approx(brier_score_loss(
        scores["label"].values[val].astype(int), scores["probability"].values[val]))
    assert rep.calibration_on.startswith("20 held-out")

    folder = Path(store) / "reports" / run2
    page = (folder / "index.html").read_text()
    srcs = re.findall(r"src='([^']+)'", page)
    assert {"drift.png", "roc-cv.png", "roc-val.png", "calibration.png"} <= set(srcs)
    for src in srcs:
        assert (folder / src).read_bytes()[:4] == b"\x89PNG", src
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<script" not in page
    assert page.index("features drifted") < page.index("<h2>")  # the flags come first
    manifest = (folder / "report.json").read_text()
    assert json.loads(manifest)["context"]["ingest_run"] == run2
    for text in (page, manifest):
        assert str(two_runs["root"]) not in text
        for secret in _secrets_of(two_runs["root"] / "archive"):
            assert secret not in text, secret
    md = report.qa_markdown(rep, path=path, url="file:///x")
    assert md.count("data:image/png;base64,") >= 3 and rep.flagged[0].feature in md


def test_report_of_the_first_run_from_the_cli(two_runs: dict, tmp_path: Path) -> None:
    store = two_runs["store"]
    runs = report.list_runs(store)
    assert runs[-1] == two_runs["run2"] and len(runs) == 2
    bin_ = Path(sys.executable).parent
    out = subprocess.run(
        [bin_ / "medpipe", "report", store, "--run", runs[0], "--threshold", "0.5"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"reports/{runs[0]}/index.html" in out.stdout
    man = json.loads((Path(store) / "reports" / runs[0] / "report.json").read_text())
    # the first run's samples are the training set itself: nothing drifts
    assert man["threshold"] == 0.5 and man["flagged"] == []
    # the error path in process (the command's own process start-up is covered above)
    from typer.testing import CliRunner

    from medpipe.cli import app

    bad = CliRunner().invoke(app, ["report", store, "--run", "nope"])
    assert bad.exit_code == 2 and f"store {store!r} has no run 'nope'" in bad.stdout, bad.output


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make browser installs it)")
def test_report_renders_in_chromium(two_runs: dict, tmp_path: Path) -> None:
    path, _ = report.write_report(two_runs["store"], two_runs["run2"])
    shot = tmp_path / "qa-report.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
         f"--screenshot={shot}", (Path(two_runs["store"]) / path).as_uri()],
        check=True, capture_output=True, timeout=300,
    )
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[0] >= 2000 and img.std() > 10  # a rendered page, not a blank one
