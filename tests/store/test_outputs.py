"""The outputs index (issue 13): kept by every writer, a set difference for "what is
pending?", rebuilt by ``medpipe reindex`` to equal the live one, crash-safe compaction."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from medpipe import catalog, ingest
from medpipe.cli import app
from medpipe.features import FeatureConfig
from medpipe.features import dataset as fdata
from medpipe.models.scoring import count_unscored, score_model
from medpipe.models.train import train_model
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess import apply as papply
from medpipe.sample import build_medmnist_archive
from medpipe.store import layout, outputs, parts

from ..models.conftest import SECRET, write_npz

FCFG = FeatureConfig(families=("histogram", "firstorder"))
PCFG = PreprocessConfig.default()


def _rows(*entries: tuple[str, str, str, str]) -> list[dict[str, str]]:
    return [{"output": o, "series": k, "sample": "", "version": v, "input": i, "axes": "z,y,x",
             "status": outputs.WRITTEN} for o, k, v, i in entries]


# --- the log: parts, snapshots, the current view ------------------------------------


def test_last_row_wins_resets_and_drops_apply(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    assert outputs.read_index(store) is None and outputs.ensure_index(store)
    outputs.record(store, _rows(("images", "a", "v1", "h1"), ("images", "b", "v1", "h2")))
    outputs.record(store, _rows(("images", "a", "v2", "h3")))
    outputs.record(store, [{"output": "features/f", "series": "a", "sample": "a/x",
                            "version": "v1", "input": "v1", "status": outputs.WRITTEN},
                           {"output": "features/f", "series": "b", "sample": "b/x",
                            "version": "v1", "input": "v1", "status": outputs.WRITTEN}])
    outputs.record(store, [{"output": "features/f", "series": "b", "sample": "b/x",
                            "status": outputs.DROPPED}])
    idx = outputs.read_index(store)
    assert outputs.versions(idx, "images") == {"a": "v2", "b": "v1"}
    assert outputs.inputs(idx, "features/f", by="sample") == {"a/x": "v1"}
    assert outputs.stale(outputs.versions(idx, "images"), outputs.inputs(idx, "features/f")) == [
        "a", "b"]
    # a whole-table rewrite: the table's earlier rows no longer count
    outputs.record(store, [{"output": "features/f", "status": outputs.RESET},
                           {"output": "features/f", "series": "b", "sample": "b/y",
                            "version": "v1", "input": "v1", "status": outputs.WRITTEN}])
    idx = outputs.read_index(store)
    assert outputs.inputs(idx, "features/f", by="sample") == {"b/y": "v1"}
    assert outputs.versions(idx, "images") == {"a": "v2", "b": "v1"}


def test_a_compaction_cut_short_counts_nothing_twice(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "s.zarr")
    outputs.ensure_index(store)
    outputs.record(store, _rows(("images", "a", "v1", "h1")))
    outputs.record(store, _rows(("images", "a", "v2", "h2"), ("images", "b", "v1", "h3")))
    before = outputs.read_index(store)

    # the snapshot is written, then the process dies before any part is deleted
    import fsspec.implementations.local as local

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(local.LocalFileSystem, "rm", die)
    with pytest.raises(KeyboardInterrupt):
        outputs.compact(store, owner="r1")
    monkeypatch.undo()
    names, snaps = parts.list_log(store, layout.OUTPUTS)
    assert len(names) == 2 and len(snaps) == 2  # nothing deleted yet
    after = outputs.read_index(store)
    # the old parts are ignored, not read again after the snapshot (a1 stays at v2)
    assert outputs.same_index(after, before)
    assert outputs.versions(after, "images") == {"a": "v2", "b": "v1"}

    (Path(store) / "locks" / "write.lock").unlink(missing_ok=True)
    assert outputs.compact(store, owner="r2") == 0  # the parts are already folded: the
    assert parts.list_log(store, layout.OUTPUTS)[0] == []  # next compaction deletes them
    outputs.record(store, _rows(("images", "c", "v1", "h4")))
    assert outputs.compact(store, owner="r3") == 1
    names, snaps = parts.list_log(store, layout.OUTPUTS)
    assert names == [] and len(snaps) == 1
    assert outputs.versions(outputs.read_index(store), "images") == {
        "a": "v2", "b": "v1", "c": "v1"}


def test_an_existing_store_without_index_is_not_indexed_by_itself(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    (Path(store) / layout.IMAGES).mkdir(parents=True)
    assert not outputs.ensure_index(store)
    outputs.record(store, _rows(("images", "a", "v1", "h1")))  # parts alone are not trusted
    assert outputs.read_index(store) is None


# --- the index kept by ingest -> preprocess -> features -> score ---------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("outputs")
    npz = write_npz(root / "tiny.npz", n_train=24, n_val=9, seed=5)
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist")
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    return {"archive": archive, "store": store, "pgroup": papply.preprocessed_group(PCFG)}


def _without_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "read_index", lambda store: None)


def _pending(store: str, pgroup: str, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """(pending preprocess, stale features, unscored) from the index and from the store."""
    fgroup = fdata.features_group(FCFG, source=pgroup)

    def ask() -> tuple:
        return (papply.pending_series(store, config=PCFG),
                fdata.stale_series(store, config=FCFG, source=pgroup),
                count_unscored(store, layout.scores("ix", "v1"), fgroup))

    live = ask()
    raw = fdata.stale_series(store, config=FCFG)  # features of the ingested images: none
    with monkeypatch.context() as m:
        _without_index(m)
        assert ask() == live  # the set difference answers as the metadata does
        assert fdata.stale_series(store, config=FCFG) == raw
    assert len(raw) == 33
    return live


def _run(store: str, pgroup: str, keys: list[str]) -> None:
    written, unsupported = papply.preprocess_batch(store, keys, config=PCFG)
    assert sorted(written) == sorted(keys) and not unsupported
    fdata.update_features(store, config=FCFG, source=pgroup)


def test_pending_is_a_set_difference_on_the_index(pipeline: dict,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, archive, pgroup = pipeline["store"], pipeline["archive"], pipeline["pgroup"]
    assert outputs.has_index(store)  # a new store is indexed from its first ingest
    keys = sorted(layout.key_of(p) for p in papply._store.list_groups(store, layout.IMAGES))
    assert len(keys) == 33
    # with an index, nothing reads an image's metadata to know what is pending
    with monkeypatch.context() as m:
        def no_metadata(*args: object, **kwargs: object) -> None:
            raise AssertionError("read image metadata")

        m.setattr(papply._store, "read_attrs", no_metadata)
        m.setattr(papply._store, "list_groups", no_metadata)
        m.setattr(fdata._store, "read_attrs", no_metadata)
        m.setattr(fdata._store, "list_groups", no_metadata)
        assert papply.pending_series(store, config=PCFG) == keys
        assert fdata.stale_series(store, config=FCFG, source=pgroup) == []
    assert _pending(store, pgroup, monkeypatch)[0] == keys

    _run(store, pgroup, keys)
    fgroup = fdata.features_group(FCFG, source=pgroup)
    train = train_model(store, name="ix", features=fgroup, labels=archive / "labels.csv",
                        secret=SECRET, estimator="logreg", n_splits=3, n_boot=10,
                        outer_folds=2)
    assert train["version"] == "v1"
    assert _pending(store, pgroup, monkeypatch) == ([], [], 33)
    assert score_model(store, model="ix")["scored"] == 33
    assert _pending(store, pgroup, monkeypatch) == ([], [], 0)
    assert outputs.same_index(outputs.rebuild(store), outputs.read_index(store))

    # one file changes: exactly its series is pending at every stage, then nothing
    changed = sorted((archive / "dicom" / "train").glob("*.dcm"))[2]
    ds = pydicom.dcmread(changed)
    ds.PixelData = (255 - ds.pixel_array.astype(np.uint8)).astype(np.uint8).tobytes()
    ds.save_as(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    key = str(catalog.current(store).loc[changed.relative_to(archive).as_posix(), "series"])
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    assert _pending(store, pgroup, monkeypatch) == ([key], [], 0)
    papply.preprocess_batch(store, [key], config=PCFG)
    assert _pending(store, pgroup, monkeypatch) == ([], [key], 0)
    assert fdata.update_features(store, config=FCFG, source=pgroup)["keys"] == [key]
    assert _pending(store, pgroup, monkeypatch) == ([], [], 1)
    assert score_model(store, model="ix")["rescored"] == 1
    assert _pending(store, pgroup, monkeypatch) == ([], [], 0)
    pipeline["live"] = outputs.read_index(store)


def test_reindex_rebuilds_the_live_index(pipeline: dict, tmp_path: Path) -> None:
    """Acceptance 5: ``medpipe reindex`` rebuilds an index equal to the incremental one."""
    if "live" not in pipeline:
        pytest.skip("needs test_pending_is_a_set_difference_on_the_index first")
    store, live = pipeline["store"], pipeline["live"]
    runner = CliRunner()
    res = runner.invoke(app, ["reindex", store, "--check"])
    assert res.exit_code == 0, res.output
    assert "matches" in res.output

    # an existing store without an index: the stages fall back; reindex brings it back
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns(layout.OUTPUTS))
    assert outputs.read_index(copy) is None
    assert runner.invoke(app, ["reindex", copy, "--check"]).exit_code == 1
    res = runner.invoke(app, ["reindex", copy])
    assert res.exit_code == 0, res.output
    assert f"{len(live)} entries" in res.output and "images 33" in res.output
    rebuilt = outputs.read_index(copy)
    assert outputs.same_index(rebuilt, live)
    pd.testing.assert_frame_equal(
        rebuilt.sort_values(list(outputs.KEY)).reset_index(drop=True),
        live.sort_values(list(outputs.KEY)).reset_index(drop=True))
    # one snapshot, no part: reading the index is one file
    names, snaps = parts.list_log(copy, layout.OUTPUTS)
    assert names == [] and len(snaps) == 1
    # and a stale index is told apart: a forgotten output differs from the store
    outputs.record(copy, [{"output": "images", "series": "ghost", "sample": "",
                           "version": "x", "input": "y", "status": outputs.WRITTEN}])
    assert runner.invoke(app, ["reindex", copy, "--check"]).exit_code == 1


# --- catalog compaction --------------------------------------------------------------


def test_catalog_compaction_keeps_every_row(pipeline: dict, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "cat.zarr")
    shutil.copytree(pipeline["store"], store)
    before = catalog.read_catalog(store).reset_index(drop=True)
    files, listed = parts.live_files(store, layout.CATALOG)
    assert len(files) == len(listed) > 30  # one part per series ingested, and per probe

    # cut short after the snapshot is written: nothing read changes, nothing twice
    import fsspec.implementations.local as local

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(local.LocalFileSystem, "rm", die)
        with pytest.raises(KeyboardInterrupt):
            catalog.compact(store, owner="c1")
    (Path(store) / "locks" / "write.lock").unlink(missing_ok=True)
    pd.testing.assert_frame_equal(catalog.read_catalog(store).reset_index(drop=True), before)
    assert len(parts.live_files(store, layout.CATALOG)[0]) == 1

    assert catalog.compact(store, owner="c2") == 0  # one file to read already
    after = catalog.read_catalog(store).reset_index(drop=True)
    pd.testing.assert_frame_equal(after, before)
    pd.testing.assert_frame_equal(catalog.current(store), catalog.current(before))
    assert sorted(p.name for p in (Path(store) / layout.CATALOG).iterdir()
                  if p.suffix == ".parquet")[0].startswith("snapshot-")

    # parts appended later are read after the snapshot, and fold into the next one
    ingest.ingest_archive(str(pipeline["archive"]), store, secret=SECRET)  # nothing new
    catalog.append(store, [{"path": "x.dcm", "status": "quarantined", "reason": "r"}],
                   run_id="r9")
    grown = catalog.read_catalog(store).reset_index(drop=True)
    assert len(grown) == len(before) + 1 and grown["path"].iloc[-1] == "x.dcm"
    assert catalog.compact(store, owner="c3") == 2
    pd.testing.assert_frame_equal(catalog.read_catalog(store).reset_index(drop=True), grown)
    assert len(list((Path(store) / layout.CATALOG).glob("*.parquet"))) == 1


def test_an_unsupported_series_is_not_pending_again_until_it_changes(tmp_path: Path) -> None:
    """A colour image cannot be preprocessed: recorded once, it no longer starts a run."""
    from pydicom.data import get_testdata_file

    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("CT_small.dcm", "SC_rgb_dcmtk_+eb+cr.dcm"):
        shutil.copy(get_testdata_file(name), archive / name)
    store = str(tmp_path / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    keys = papply.pending_series(store, config=PCFG)
    assert len(keys) == 2
    written, unsupported = papply.preprocess_batch(store, keys, config=PCFG)
    assert len(written) == len(unsupported) == 1
    (rgb,) = unsupported
    assert papply.pending_series(store, config=PCFG) == []
    # what a rebuild finds in the store says the same
    assert outputs.same_index(outputs.rebuild(store), outputs.read_index(store))
    # an unsupported series is no feature source of the preprocessed group
    assert fdata.stale_series(store, config=FCFG, source=papply.preprocessed_group(PCFG)) == [
        next(iter(written))]
    # the file changes: the series is tried again
    path = archive / "SC_rgb_dcmtk_+eb+cr.dcm"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    assert papply.pending_series(store, config=PCFG) == [rgb]
