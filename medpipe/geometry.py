"""The geometry convention shared by every reader and by the store.

* ``axes`` names the array's axes, ``("z", "y", "x")`` for grey-level images and
  ``("c", "y", "x")`` / ``("c", "z", "y", "x")`` for colour.  2D grey images are
  stored with a single ``z`` plane.
* ``spacing`` has one entry per *spatial* axis (``z, y, x`` order), in millimetres.
* ``origin`` is the patient-space position (DICOM LPS, mm) of voxel ``[0, 0, 0]``.
* ``direction`` is a 3×3 matrix whose row ``a`` is the LPS unit vector along
  spatial array axis ``a`` (rows for ``z``, ``y``, ``x``).  The position of voxel
  index ``(k, j, i)`` is ``origin + k*sz*direction[0] + j*sy*direction[1] + i*sx*direction[2]``.
  NIfTI (RAS) readers convert to LPS.
"""

from __future__ import annotations

__all__ = ["identity_direction"]


def identity_direction() -> tuple[tuple[float, float, float], ...]:
    """Direction matrix of an image whose axes are (z, y, x) = LPS (S, P, L) aligned.

    Returns
    -------
    tuple of tuple of float
        Rows for the ``z``, ``y`` and ``x`` array axes.
    """
    return ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
