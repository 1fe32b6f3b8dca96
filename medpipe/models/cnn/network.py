"""The network: a small residual 2-D CNN with its augmentation layers (Keras 3).

Every layer is a stock Keras layer, so a saved model rebuilds from its ``.keras`` file
under ``safe_mode=True`` with no medpipe code (:data:`LAYERS` is the list that loading
accepts).  The augmentation layers are active only in training (``model.fit``), identity
at inference.
"""

from __future__ import annotations

from typing import Any

from medpipe.models.cnn.backend import keras

__all__ = ["AUGMENTATIONS", "LAYERS", "build_network"]

#: Augmentation strengths: left-right flips, rotation (fraction of a turn), shift (fraction of the
#: side), contrast factor, brightness shift and Gaussian noise (both in standard
#: deviations of the standardised image).
AUGMENTATIONS: dict[str, dict[str, float]] = {
    "none": {},
    "light": {"rotation": 0.02, "shift": 0.05, "contrast": 0.1, "brightness": 0.1,
              "noise": 0.0},
    "strong": {"rotation": 0.05, "shift": 0.1, "contrast": 0.3, "brightness": 0.3,
               "noise": 0.05},
}

#: Value range of the standardised image the intensity jitter clips to.
_RANGE = (-5.0, 5.0)

#: Keras layer classes a medpipe CNN is built from: the only ones a loaded file may name.
LAYERS: frozenset[str] = frozenset({
    "InputLayer", "Normalization", "RandomFlip", "RandomRotation", "RandomTranslation",
    "RandomContrast", "RandomBrightness", "GaussianNoise", "Conv2D", "BatchNormalization",
    "Activation", "Add", "GlobalAveragePooling2D", "Dropout", "Dense",
})


def _augmentation(x: Any, strength: str, seed: int) -> Any:
    k = keras()
    a = AUGMENTATIONS[strength]
    if not a:
        return x
    x = k.layers.RandomFlip("horizontal", seed=seed, name="aug_flip")(x)
    x = k.layers.RandomRotation(a["rotation"], fill_mode="reflect", seed=seed + 1,
                                name="aug_rotate")(x)
    x = k.layers.RandomTranslation(a["shift"], a["shift"], fill_mode="reflect",
                                   seed=seed + 2, name="aug_shift")(x)
    # intensity jitter on the standardised image; both layers clip to value_range, and
    # RandomBrightness shifts by factor x its width
    lo, hi = _RANGE
    x = k.layers.RandomContrast(a["contrast"], value_range=_RANGE, seed=seed + 3,
                                name="aug_contrast")(x)
    x = k.layers.RandomBrightness(a["brightness"] / (hi - lo), value_range=_RANGE,
                                  seed=seed + 4, name="aug_brightness")(x)
    if a["noise"] > 0:
        x = k.layers.GaussianNoise(a["noise"], seed=seed + 5, name="aug_noise")(x)
    return x


def _conv_bn(x: Any, filters: int, stride: int, name: str, *, relu: bool = True) -> Any:
    k = keras()
    x = k.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                        kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = k.layers.BatchNormalization(name=f"{name}_bn")(x)
    return k.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _block(x: Any, filters: int, stride: int, name: str) -> Any:
    """A basic residual block (two 3x3 convolutions; projected shortcut on a change)."""
    k = keras()
    y = _conv_bn(x, filters, stride, f"{name}_a")
    y = _conv_bn(y, filters, 1, f"{name}_b", relu=False)
    if stride != 1 or x.shape[-1] != filters:
        x = k.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_proj")(x)
        x = k.layers.BatchNormalization(name=f"{name}_proj_bn")(x)
    x = k.layers.Add(name=f"{name}_add")([x, y])
    return k.layers.Activation("relu", name=f"{name}_out")(x)


def build_network(
    *,
    image_size: int,
    n_classes: int,
    mean: float,
    variance: float,
    width: int = 16,
    depth: int = 2,
    dropout: float = 0.2,
    augment: str = "strong",
    seed: int = 0,
) -> Any:
    """A residual CNN ``(image_size, image_size, 1) -> softmax(n_classes)``.

    Parameters
    ----------
    image_size
        Edge of the square input image.
    n_classes
        Output classes (softmax).
    mean, variance
        Intensity statistics of the training images; the first layer standardises with
        them (a ``Normalization`` layer, saved with the model).
    width
        Filters of the stem and first stage; each further stage doubles them.
    depth
        Stages, each one residual block; every stage after the first halves the
        resolution (stride 2).
    dropout
        Dropout before the classifier.
    augment
        ``none``, ``light`` or ``strong`` (:data:`AUGMENTATIONS`).
    seed
        Seed of the augmentation layers.

    Returns
    -------
    keras.Model
    """
    k = keras()
    inp = k.Input((image_size, image_size, 1), name="image")
    x = k.layers.Normalization(mean=mean, variance=variance, name="standardise")(inp)
    x = _augmentation(x, augment, seed)
    x = _conv_bn(x, width, 1, "stem")
    for s in range(depth):
        x = _block(x, width * 2**s, 1 if s == 0 else 2, f"stage{s + 1}")
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = k.layers.Dropout(dropout, seed=seed + 6, name="dropout")(x)
    out = k.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return k.Model(inp, out, name="medpipe_cnn")
