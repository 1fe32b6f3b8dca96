"""A real napari screenshot of an IBSI CT with its tumour contour (``make napari-screenshot``).

Ingests one IBSI sarcoma CT series and its RTSTRUCT from the shared data into a
throw-away store, opens the image group in napari with the napari-ome-zarr plugin (as
``napari --plugin napari-ome-zarr STORE/images/<series>`` does), shows the axial slice
through the largest tumour cross-section in a soft-tissue window and saves the window.
Run it under a display (``xvfb-run``); it needs the ``napari`` extra (a Qt binding).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PATIENT = "STS_002"
#: soft-tissue window (HU)
WINDOW = (-160.0, 240.0)


def screenshot(data: Path, out: Path, *, size: tuple[int, int] = (960, 640)) -> Path:
    """Ingest ``PATIENT``'s CT from ``data``, show it in napari and save the window to ``out``.

    Parameters
    ----------
    data
        The shared data folder (holding ``dicom/ibsi_sts``).
    out
        The PNG to write.
    size
        Window width and height in pixels.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import napari
    from napari.layers import Image, Labels
    from qtpy.QtWidgets import QApplication

    from medpipe import ingest, store

    src = data / "dicom" / "ibsi_sts" / PATIENT / "CT"
    if not src.is_dir():
        raise SystemExit(f"{src} not found: pass --data (the shared data folder)")
    with tempfile.TemporaryDirectory() as tmp:
        archive, st = Path(tmp) / "archive", str(Path(tmp) / "store.zarr")
        shutil.copytree(src, archive / "CT")
        ingest.ingest_archive(str(archive), st, secret=b"napari-screenshot")
        (group,) = store.list_groups(st, "images")
        (mask,) = store.open_labels(st, group).values()
        z = int(np.argmax(mask.values.reshape(mask.shape[0], -1).sum(axis=1)))

        viewer = napari.Viewer(title="napari: IBSI STS_002 CT, GTV", show=True)
        layers = viewer.open(f"{st}/{group}", plugin="napari-ome-zarr")
        for layer in layers:
            if isinstance(layer, Image):
                layer.name, layer.colormap, layer.contrast_limits = "CT (HU)", "gray", WINDOW
            elif isinstance(layer, Labels):
                layer.name, layer.visible, layer.contour = "GTV (RTSTRUCT)", True, 2
        viewer.dims.set_current_step(0, z)
        viewer.canvas.overlays.scale_bar.visible = True  # in the layers' unit, mm
        viewer.window.resize(*size)
        viewer.reset_view()
        for _ in range(5):
            QApplication.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        viewer.close()
    return out


def main() -> None:
    """Command line: ``--data`` (default ``$MEDPIPE_SHARED_DATA`` or ``../shared/data``)."""
    default = os.environ.get("MEDPIPE_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "napari-ibsi-ct.png")
    args = parser.parse_args()
    print(screenshot(args.data, args.out))


if __name__ == "__main__":
    main()
