""":class:`CNNClassifier`: a scikit-learn classifier that trains the residual CNN.

It consumes the ``pixels`` feature family (the image resampled to ``size x size``,
``pixel_<row>_<col>`` columns) and reshapes those columns to images inside the
estimator, so grid search, patient-grouped CV, scoring, evaluation and the model
registry work on the feature matrix as for the other estimators.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.validation import check_is_fitted

from medpipe.errors import ModelError
from medpipe.models.cnn.backend import keras

log = logging.getLogger(__name__)

__all__ = ["CNNClassifier", "RECIPES", "RowGroups"]

#: ``fixed``: train ``epochs`` epochs (the cosine schedule ends there); ``early_stopping``:
#: at most ``epochs``, stopped ``patience`` epochs after the best validation loss on an
#: inner patient-grouped split of the rows given to ``fit``, best weights restored.
RECIPES = ("fixed", "early_stopping")


#: Rows per prediction batch (inputs are padded to a multiple).
_PREDICT_BATCH = 128


def _full_batches(x: np.ndarray, y: np.ndarray, class_w: np.ndarray, batch: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and loss weights padded to whole batches with weight-0 copies.

    JAX compiles one function per batch shape; a last, partial batch of a size that
    changes with every fold would compile again in each fit of a search.
    """
    pad = (-len(x)) % batch
    idx = np.concatenate([np.arange(len(x)), np.arange(pad) % max(len(x), 1)])
    w = class_w[y].astype(np.float32)
    return x[idx], y[idx], np.concatenate([w, np.zeros(pad, np.float32)])


def _shuffled_batches(k: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray, batch: int,
                      seed: int) -> Any:
    """Whole batches in a new order each epoch, drawn from the fit's own generator.

    Keras shuffles arrays with NumPy's *global* generator (``np.random.permutation``),
    which any other thread of the process (a Dask client, a Prefect server) may draw from
    during the fit; a fixed ``random_state`` would then not give the same model.
    """

    class _Batches(k.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return len(x) // batch

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            idx = self.order[i * batch:(i + 1) * batch]
            return x[idx], y[idx], w[idx]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return _Batches()


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """Residual 2-D CNN on the pixel columns of a feature matrix (Keras 3 on JAX).

    Parameters
    ----------
    columns
        Indices of the ``size x size`` pixel columns of ``X`` in row-major order (see
        :func:`medpipe.models.cnn.pixel_columns`); ``None``: every column is a pixel.
    width, depth, dropout, augment
        The network (:func:`medpipe.models.cnn.network.build_network`).
    epochs
        Epochs of the ``fixed`` recipe (at most, with ``early_stopping``).
    batch_size
        Mini-batch size.
    learning_rate
        Peak learning rate of AdamW, decayed to 1 % of it by a cosine schedule over
        the planned epochs.
    weight_decay
        AdamW's decoupled weight decay.
    recipe
        ``fixed`` or ``early_stopping`` (:data:`RECIPES`).
    patience, validation_fraction
        Early stopping: epochs without improvement, and the share of patients held out
        of ``fit``'s rows to watch the validation loss.
    class_weight
        ``balanced`` (loss weights inversely proportional to class frequency) or
        ``None``.
    random_state
        Seed of the weights, augmentation, shuffling and inner split.
    row_groups
        Patient keys of the training rows (:class:`RowGroups`) for the early-stopping
        split when ``fit`` is given no ``groups`` (set by ``train``; not saved).
    weights
        A local Keras weights file (``*.weights.h5``, e.g. a pretrained checkpoint of
        the same network) loaded before training; data only, no code.  ``epochs=0``
        then uses it as it is.
    """

    def __init__(
        self,
        *,
        columns: tuple[int, ...] | None = None,
        width: int = 16,
        depth: int = 2,
        dropout: float = 0.2,
        augment: str = "strong",
        epochs: int = 40,
        batch_size: int = 32,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        recipe: str = "fixed",
        patience: int = 10,
        validation_fraction: float = 0.2,
        class_weight: str | None = "balanced",
        random_state: int = 0,
        row_groups: RowGroups | None = None,
        weights: str | None = None,
    ) -> None:
        self.columns = columns
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.recipe = recipe
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.row_groups = row_groups
        self.weights = weights

    # ------------------------------------------------------------------ inputs
    def images(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        """The pixel columns of ``X`` as ``(n, size, size, 1)`` float32 images."""
        x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2:
            raise ModelError(f"cnn: expected a samples x features matrix, got shape {x.shape}")
        if self.columns is not None:
            x = x[:, np.asarray(self.columns, dtype=np.intp)]
        size = math.isqrt(x.shape[1])
        if size < 4 or size * size != x.shape[1]:
            raise ModelError(
                f"cnn: {x.shape[1]} input columns are not a square image; the cnn "
                "estimator trains on the 'pixels' feature family (add it to the feature "
                "config's families)"
            )
        return x.reshape(len(x), size, size, 1)

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        from medpipe.models.cnn.network import AUGMENTATIONS

        if self.recipe not in RECIPES:
            raise ModelError(f"cnn: recipe {self.recipe!r}; use one of {RECIPES}")
        if self.augment not in AUGMENTATIONS:
            raise ModelError(f"cnn: augment {self.augment!r}; use one of {list(AUGMENTATIONS)}")
        if self.class_weight not in ("balanced", None):
            raise ModelError(f"cnn: class_weight {self.class_weight!r}; use 'balanced' or None")

    def _inner_split(self, y: np.ndarray, groups: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray] | None:
        """A patient-grouped, stratified hold-out of about ``validation_fraction``
        (``None`` when a class has fewer than 2 patients to split)."""
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
        k = min(max(2, round(1 / self.validation_fraction)), per_class)
        if k < 2:
            return None
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        tr, va = next(cv.split(np.zeros(len(y)), y, groups))
        return tr, va

    def fit(self, X: Any, y: Any, groups: Any = None) -> CNNClassifier:  # noqa: N803
        """Train the network on the rows given (nothing else is seen).

        Parameters
        ----------
        X
            Feature matrix (the pixel columns are used).
        y
            Class labels.
        groups
            Patient key per row: the ``early_stopping`` recipe's inner validation split
            keeps each patient on one side (without it, each row is its own patient).

        Returns
        -------
        CNNClassifier
            ``self``, with ``model_`` (the Keras model), ``classes_``, ``history_``.
        """
        self._check_params()
        k = keras()
        k.utils.set_random_seed(int(self.random_state))
        img = self.images(X)
        self.n_features_in_ = int(np.asarray(X).shape[1])
        self.classes_, yi = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ModelError("cnn: the training rows hold a single class")
        tr = np.arange(len(yi))
        val = None
        if self.recipe == "early_stopping":
            if groups is None and self.row_groups is not None:
                groups = self.row_groups(np.asarray(X))
            split = self._inner_split(yi, groups)
            if split is None:  # too few patients to hold any out: the planned epochs
                log.warning("cnn: too few patients for an early-stopping split; "
                            "training %d epochs", self.epochs)
            else:
                tr, va = split
                val = (img[va], yi[va])
        x_tr, y_tr = img[tr], yi[tr]
        model = self._network(k, x_tr)
        if self.weights is not None:
            try:
                model.load_weights(str(self.weights))
            except Exception as err:  # noqa: BLE001 - a wrong file is a model error
                raise ModelError(f"cnn: cannot load weights {self.weights}: {err}") from None
        steps = math.ceil(len(x_tr) / self.batch_size) * int(self.epochs)
        schedule = k.optimizers.schedules.CosineDecay(
            float(self.learning_rate), decay_steps=max(steps, 1), alpha=0.01)
        model.compile(
            optimizer=k.optimizers.AdamW(learning_rate=schedule,
                                         weight_decay=float(self.weight_decay)),
            loss="sparse_categorical_crossentropy",
        )
        callbacks = []
        if val is not None:
            callbacks.append(k.callbacks.EarlyStopping(
                monitor="val_loss", patience=int(self.patience), restore_best_weights=True))
        history: dict[str, list] = {}
        if int(self.epochs) > 0:
            cw = self._class_weights(y_tr)
            x_fit, y_fit, w_fit = _full_batches(x_tr, y_tr, cw, int(self.batch_size))
            if val is not None:
                val = _full_batches(val[0], val[1], cw, int(self.batch_size))
            batches = _shuffled_batches(k, x_fit, y_fit, w_fit, int(self.batch_size),
                                        int(self.random_state))
            history = model.fit(batches, epochs=int(self.epochs), validation_data=val,
                                callbacks=callbacks, verbose=0).history
        self.model_ = model
        self.history_ = {m: [float(v) for v in vals] for m, vals in history.items()}
        self.epochs_run_ = len(self.history_.get("loss", []))
        return self

    def _network(self, k: Any, x_tr: np.ndarray) -> Any:
        from medpipe.models.cnn.network import build_network

        return build_network(
            image_size=x_tr.shape[1], n_classes=len(self.classes_),
            mean=float(x_tr.mean()), variance=float(max(x_tr.var(), 1e-12)),
            width=int(self.width), depth=int(self.depth), dropout=float(self.dropout),
            augment=self.augment, seed=int(self.random_state),
        )

    def _class_weights(self, yi: np.ndarray) -> np.ndarray:
        """Loss weight per class: ``n / (k n_c)`` when ``balanced``, else 1."""
        counts = np.bincount(yi, minlength=len(self.classes_)).astype(float)
        if self.class_weight is None:
            return np.ones(len(counts))
        return np.where(counts > 0, len(yi) / (len(counts) * np.maximum(counts, 1)), 0.0)

    # ------------------------------------------------------------------ predicting
    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        img = self.images(X)
        if len(img) == 0:
            return np.zeros((0, len(self.classes_)))
        pad = (-len(img)) % _PREDICT_BATCH  # one batch shape: one compiled function
        img = np.concatenate([img, np.zeros((pad, *img.shape[1:]), img.dtype)])
        out = self.model_.predict(img, batch_size=_PREDICT_BATCH, verbose=0)
        return np.asarray(out, dtype=np.float64)[: len(img) - pad]

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        """The most probable class of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # the Keras model travels (to and from Dask workers) as its .keras bytes, and is
        # rebuilt by the same checked, safe_mode loader as a registered model
        state = dict(super().__getstate__())  # a copy: object.__getstate__ is __dict__
        if "model_" in state:
            from medpipe.models.cnn.saving import keras_bytes

            state["model_"] = keras_bytes(state["model_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("model_"), bytes):
            from medpipe.models.cnn.saving import load_keras_bytes

            state = {**state, "model_": load_keras_bytes(state["model_"], where="pickle")}
        super().__setstate__(state)


class RowGroups:
    """Patient key of a feature row, looked up by the row's content.

    scikit-learn's and dask-ml's searches pass ``groups`` to the fold split only, not to
    ``fit``; a CNN built by ``train`` carries this lookup of the training rows instead,
    so that its early-stopping split keeps each patient on one side.  A row it does not
    know is its own patient.

    Parameters
    ----------
    x
        Feature rows.
    groups
        Patient key per row.
    """

    def __init__(self, x: np.ndarray, groups: np.ndarray) -> None:
        self._keys = dict(zip(self._digests(x), (str(g) for g in groups), strict=True))

    @staticmethod
    def _digests(x: np.ndarray) -> list[bytes]:
        import hashlib

        rows = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
        return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Patient key of each row of ``x``."""
        return np.array([self._keys.get(d, f"row-{i}")
                         for i, d in enumerate(self._digests(x))], dtype=object)

    def __len__(self) -> int:
        return len(self._keys)
