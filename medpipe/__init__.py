"""medpipe: imaging archive → de-identified OME-Zarr → Dask preprocessing/features → dask-ml."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medpipe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
