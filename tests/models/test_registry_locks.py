"""Every registry writer takes the lock; versions are never overwritten; loads check SHA-256.

Two real processes train the same model on the same store at once.  Each child widens
the race window on purpose: right after it has chosen its version number it waits (up
to a few seconds) for the other child to have chosen one too.  Without the registry
lock both choose ``v1`` and the second silently replaces the first; with it the second
child can only choose once the first has published, and gets ``v2``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from medpipe import store as st
from medpipe.errors import ModelError, StoreError, StoreLockedError
from medpipe.models import registry as reg

SECRET = b"test-secret"


def _train_child(store: str, features: str, labels: str, barrier: Any, seed: int) -> None:
    from medpipe.models import registry
    from medpipe.models.train import train_model

    chosen = registry.next_version

    def next_version_then_wait(s: str, name: str) -> str:
        version = chosen(s, name)
        try:  # let the other process choose its version now, if it can
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return version

    registry.next_version = next_version_then_wait
    train_model(store, name="race", features=features, labels=labels, secret=SECRET,
                estimator="logreg", n_splits=3, n_boot=20, seed=seed)


@pytest.fixture
def store_copy(grouped_store: dict, tmp_path: Path) -> str:
    dst = tmp_path / "store.zarr"
    shutil.copytree(grouped_store["store"], dst)
    shutil.rmtree(dst / "models", ignore_errors=True)
    return str(dst)


def test_two_concurrent_trains_make_two_intact_versions(
    grouped_store: dict, store_copy: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    labels = str(grouped_store["archive"] / "labels.csv")
    procs = [
        ctx.Process(target=_train_child,
                    args=(store_copy, grouped_store["features"], labels, barrier, seed))
        for seed in (1, 2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]
    assert reg.list_versions(store_copy, "race") == ["v1", "v2"]
    seeds = set()
    for v in ("v1", "v2"):
        model, meta = reg.load_model(store_copy, "race", v)  # checks the SHA-256
        assert meta["version"] == v and hasattr(model, "predict_proba")
        blob = (Path(store_copy) / "models/race" / v / "pipeline.skops").read_bytes()
        assert meta["sha256"] == hashlib.sha256(blob).hexdigest()
        assert meta["model_file"] == "pipeline.skops"
        seeds.add(meta["cv"]["seed"])
    assert seeds == {1, 2}  # each child's own model, neither replaced by the other
    assert not (Path(store_copy) / "locks" / "models.lock").exists()


def _save(store: str, name: str = "m") -> str:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    model = Pipeline([("clf", LogisticRegression())]).fit([[0.0], [1.0], [2.0], [3.0]],
                                                           [0, 0, 1, 1])
    return reg.save_model(store, name, model, {"note": "test"})


def test_tampered_model_file_is_refused(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    assert _save(store) == "v1"
    reg.load_model(store, "m", "v1")
    path = tmp_path / "s.zarr/models/m/v1/pipeline.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"models/m/v1/pipeline\.skops.*SHA-256"):
        reg.load_model(store, "m", "v1")


def test_a_version_is_never_overwritten(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    assert _save(store) == "v1"
    before = (tmp_path / "s.zarr/models/m/v1/model.json").read_bytes()
    # a half-written v2 folder (a crash on an object store) is never reused either
    (tmp_path / "s.zarr/models/m/v2").mkdir()
    assert reg.next_version(store, "m") == "v3"
    assert _save(store) == "v3"
    with pytest.raises(StoreError, match="exists already"), \
            st.atomic_group(store, "models/m/v1", overwrite=False) as tmp:
        Path(tmp).mkdir(parents=True)
        (Path(tmp) / "model.json").write_text("{}")
    assert (tmp_path / "s.zarr/models/m/v1/model.json").read_bytes() == before
    assert json.loads(before)["version"] == "v1"
    with pytest.raises(ModelError, match="never rewritten"):
        reg.write_model_file(store, "m", "v1", "pipeline.skops", b"x")
    assert not list((tmp_path / "s.zarr/models/m").glob(".tmp-*"))


def test_writers_wait_for_the_registry_lock(tmp_path: Path) -> None:
    """A writer blocked by another live holder of ``locks/models.lock`` waits, then writes."""
    store = str(tmp_path / "s.zarr")
    lock = tmp_path / "s.zarr/locks/models.lock"
    ctx = multiprocessing.get_context("spawn")
    holder = ctx.Process(target=_hold_lock, args=(store, 3.0))
    holder.start()
    try:
        for _ in range(600):
            if lock.exists():
                break
            holder.join(timeout=0.1)
        assert lock.exists()
        held = json.loads(lock.read_text())
        assert held["pid"] == holder.pid
        with pytest.raises(StoreLockedError, match="locked by run holder"):
            with reg.registry_lock(store, timeout_s=0.2):
                pass
        assert _save(store) == "v1"  # waits for the holder, then publishes
    finally:
        holder.join(timeout=30)
    assert holder.exitcode == 0


def _hold_lock(store: str, seconds: float) -> None:
    import time

    from medpipe.store import store_lock

    with store_lock(store, reg.REGISTRY_LOCK, owner="holder"):
        time.sleep(seconds)
