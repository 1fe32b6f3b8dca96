"""Feature extraction: IBSI first-order, histogram, GLCM and morphology features, LBP,
sharpness, HSV colour and regionprops, plus the lazy distributed :func:`extract`."""

from medpipe.features.colour import hsv_features
from medpipe.features.discretise import discretise_fbn, discretise_fbs, discretise_image
from medpipe.features.extract import FeatureConfig, compute_features, extract
from medpipe.features.firstorder import histogram_features, statistics_features
from medpipe.features.glcm import glcm_features
from medpipe.features.shape import morphology_features, regionprops_features
from medpipe.features.texture import laplacian_variance, lbp_features

__all__ = [
    "FeatureConfig",
    "compute_features",
    "discretise_fbn",
    "discretise_fbs",
    "discretise_image",
    "extract",
    "glcm_features",
    "histogram_features",
    "hsv_features",
    "laplacian_variance",
    "lbp_features",
    "morphology_features",
    "regionprops_features",
    "statistics_features",
]
