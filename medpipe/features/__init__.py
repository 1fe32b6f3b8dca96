"""Feature extraction: IBSI first-order, histogram, GLCM, GLRLM and morphology features,
LBP, sharpness, HSV colour, regionprops and ORB bag-of-visual-words, plus the lazy
distributed :func:`extract`.

Families are records in :mod:`medpipe.features.registry`; each registers itself in its
own module, and :class:`FeatureConfig` validates its ``families`` against the registry."""

from medpipe.features.colour import hsv_features
from medpipe.features.discretise import discretise_fbn, discretise_fbs, discretise_image
from medpipe.features.extract import FeatureConfig, compute_features, extract
from medpipe.features.firstorder import histogram_features, statistics_features
from medpipe.features.glcm import glcm_features
from medpipe.features.gldzm import gldzm_features
from medpipe.features.glrlm import glrlm_features
from medpipe.features.glszm import glszm_features
from medpipe.features.keypoints import bovw_histogram, learn_codebook, orb_descriptors
from medpipe.features.registry import (
    Family,
    family_names,
    get_family,
    register_family,
    unregister_family,
)
from medpipe.features.shape import morphology_features, regionprops_features
from medpipe.features.texture import laplacian_variance, lbp_features

__all__ = [
    "Family",
    "FeatureConfig",
    "family_names",
    "get_family",
    "register_family",
    "unregister_family",
    "compute_features",
    "discretise_fbn",
    "discretise_fbs",
    "discretise_image",
    "extract",
    "glcm_features",
    "glrlm_features",
    "glszm_features",
    "gldzm_features",
    "bovw_histogram",
    "learn_codebook",
    "orb_descriptors",
    "histogram_features",
    "hsv_features",
    "laplacian_variance",
    "lbp_features",
    "morphology_features",
    "regionprops_features",
    "statistics_features",
]
