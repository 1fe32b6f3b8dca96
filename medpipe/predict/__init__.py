"""``medpipe predict``: a trained model applied to one new study, with its reasons.

:func:`predict` runs a DICOM folder, a DICOM file or a NIfTI file through the model's
own recorded stages (de-identify and read, preprocess, features) in a temporary (or
kept) store and returns the probability, the predicted label at the model's threshold
and, for linear models and random forests, the contributing features
(:mod:`medpipe.predict.explain`); an input whose modality or geometry the model was
not trained on is refused with the reason.
"""

from medpipe.predict.explain import FOREST, LINEAR, Contribution, Explanation, explain
from medpipe.predict.run import (
    Prediction,
    PredictResult,
    Recipe,
    Refusal,
    predict,
    recipe,
)

__all__ = [
    "FOREST",
    "LINEAR",
    "Contribution",
    "Explanation",
    "Prediction",
    "PredictResult",
    "Recipe",
    "Refusal",
    "explain",
    "predict",
    "recipe",
]
