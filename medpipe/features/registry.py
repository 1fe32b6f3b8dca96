"""The feature-family registry: one :class:`Family` record per family.

A family is a name, the feature names it produces for a config and the function that
computes them for one in-memory :class:`~medpipe.features.sample.Sample`.  Each built-in
family registers itself in its own module (``register_family(Family(...))`` at import);
the modules are listed once in :data:`BUILTIN_MODULES` and imported on the first lookup.
Adding a family is one new module plus one line there; a family can also be registered
from anywhere else (a plugin, a test) with :func:`register_family`.

:class:`~medpipe.features.FeatureConfig` validates its ``families`` against this registry
and keeps the :class:`Family` records it resolved, so a config sent to a Dask worker
carries the compute functions with it (pickled by reference): workers never look a
family up by name.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medpipe.errors import ConfigError

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "BUILTIN_MODULES",
    "Family",
    "register_family",
    "unregister_family",
    "get_family",
    "family_names",
    "families",
]

#: Modules whose import registers the built-in families, in listing order.
BUILTIN_MODULES: tuple[str, ...] = (
    "medpipe.features.firstorder",  # firstorder, histogram
    "medpipe.features.glcm",
    "medpipe.features.glrlm",
    "medpipe.features.glszm",
    "medpipe.features.gldzm",
    "medpipe.features.shape",  # morphology, regionprops
    "medpipe.features.texture",
    "medpipe.features.colour",
    "medpipe.features.pixels",  # pixels, hog
    "medpipe.features.ngtdm",
    "medpipe.features.ngldm",
    "medpipe.features.ivh",
    "medpipe.features.peaks",
    "medpipe.features.keypoints",  # sift, orb (fitted: a visual-word vocabulary)
    "medpipe.features.cnn",  # embeddings of a registered CNN (medpipe.features.cnn.cnn_features)
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Family:
    """One feature family.

    Parameters
    ----------
    name
        What ``FeatureConfig.families`` lists (lower case, digits, ``_``).
    feature_names
        ``feature_names(config) -> names``: the output names, in order, for a
        :class:`~medpipe.features.FeatureConfig` (independent of the data).
    compute
        ``compute(sample) -> {name: value}`` for one
        :class:`~medpipe.features.sample.Sample` (``sample.config`` is the config).
        Names it leaves out stay NaN.  Must be a module-level function so that it
        pickles by reference.
    needs_roi
        Skip ``compute`` (all NaN) when the ROI is empty.
    margin_mm
        How far (mm) beyond the ROI ``compute`` reads the image; the distributed
        extraction crops at least this much around the ROI (local intensity peaks).
    fitted
        For a *fitted* family (one whose features need state learnt from the training
        rows, e.g. a visual-word vocabulary): ``fitted(feature_names, random_state) ->
        FittedStep | None``, the model-pipeline step that turns its table columns (an
        unfitted per-sample representation) into features; ``None`` when the names hold
        none of its columns.  The contract is :mod:`medpipe.features.fitted`'s.
    """

    name: str
    feature_names: Callable[[FeatureConfig], Sequence[str]]
    compute: Callable[[Sample], Mapping[str, float]]
    needs_roi: bool = True
    margin_mm: float = 0.0
    fitted: Callable[[Sequence[str], int], Any] | None = None


_registry: dict[str, Family] = {}
_lock = threading.Lock()
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _builtins_loaded = True


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to the registry.

    Parameters
    ----------
    family
        The record.
    replace
        Replace a family of the same name instead of refusing it.

    Returns
    -------
    Family
        ``family`` (so a module can keep it).

    Raises
    ------
    ConfigError
        Bad name, or the name is taken and ``replace`` is false.
    """
    if not _NAME.match(family.name):
        raise ConfigError(
            f"feature family name {family.name!r}: use lower case letters, digits and _"
        )
    with _lock:
        old = _registry.get(family.name)
        if old is not None and old != family and not replace:
            raise ConfigError(f"feature family {family.name!r} is already registered")
        _registry[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a family (no error when it is not registered)."""
    with _lock:
        _registry.pop(name, None)


def get_family(name: str) -> Family:
    """The registered family ``name``.

    Raises
    ------
    ConfigError
        No such family; the message lists the known ones.
    """
    _load_builtins()
    try:
        return _registry[name]
    except KeyError:
        raise ConfigError(
            f"unknown feature family {name!r}; known: {', '.join(sorted(_registry))}"
        ) from None


def family_names() -> tuple[str, ...]:
    """Names of the registered families, sorted."""
    _load_builtins()
    return tuple(sorted(_registry))


def families() -> tuple[Family, ...]:
    """The registered :class:`Family` records, sorted by name."""
    _load_builtins()
    return tuple(_registry[n] for n in sorted(_registry))
