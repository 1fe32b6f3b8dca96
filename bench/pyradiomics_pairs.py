"""pyradiomics 3.0.1 feature names ↔ medpipe's, for ``bench/features.py``.

Per pyradiomics class, each feature with an IBSI counterpart and its medpipe name (without
the image-type prefix) and relation: ``same``; ``excess+3`` (pyradiomics's Kurtosis is
the plain fourth standardised moment); ``x voxel volume`` (its TotalEnergy).
Aggregations are those pyradiomics computes: GLCM and GLRLM per direction then averaged
(IBSI "3D, averaged"), the others one 3-D matrix (IBSI "3D"); its GLDM is IBSI's NGLDM.
"""

from __future__ import annotations

#: pyradiomics class → {feature: (medpipe name without image-type prefix, relation)}
PAIRS: dict[str, dict[str, tuple[str, str]]] = {
    "firstorder": {
        "Mean": ("firstorder_mean", "same"),
        "Variance": ("firstorder_variance", "same"),
        "Skewness": ("firstorder_skewness", "same"),
        "Kurtosis": ("firstorder_kurtosis", "excess+3"),
        "Median": ("firstorder_median", "same"),
        "Minimum": ("firstorder_minimum", "same"),
        "10Percentile": ("firstorder_p10", "same"),
        "90Percentile": ("firstorder_p90", "same"),
        "Maximum": ("firstorder_maximum", "same"),
        "InterquartileRange": ("firstorder_iqr", "same"),
        "Range": ("firstorder_range", "same"),
        "MeanAbsoluteDeviation": ("firstorder_mad", "same"),
        "RobustMeanAbsoluteDeviation": ("firstorder_robust_mad", "same"),
        "RootMeanSquared": ("firstorder_rms", "same"),
        "Energy": ("firstorder_energy", "same"),
        "TotalEnergy": ("firstorder_energy", "x voxel volume"),
        "Entropy": ("ih_entropy", "same"),
        "Uniformity": ("ih_uniformity", "same"),
    },
    "glcm": {k: (f"glcm_{v}_3d_averaged", "same") for k, v in {
        "Autocorrelation": "autocorrelation", "ClusterProminence": "cluster_prominence",
        "ClusterShade": "cluster_shade", "ClusterTendency": "cluster_tendency",
        "Contrast": "contrast", "Correlation": "correlation",
        "DifferenceAverage": "diff_average", "DifferenceEntropy": "diff_entropy",
        "DifferenceVariance": "diff_variance", "Id": "inv_diff", "Idm": "inv_diff_moment",
        "Idmn": "inv_diff_moment_norm", "Idn": "inv_diff_norm", "Imc1": "info_corr1",
        "Imc2": "info_corr2", "InverseVariance": "inv_variance",
        "JointAverage": "joint_average", "JointEnergy": "asm",
        "JointEntropy": "joint_entropy", "MaximumProbability": "joint_max",
        "SumAverage": "sum_average", "SumEntropy": "sum_entropy",
        "SumSquares": "joint_variance",
    }.items()},
    "glrlm": {k: (f"glrlm_{v}_3d_averaged", "same") for k, v in {
        "ShortRunEmphasis": "sre", "LongRunEmphasis": "lre",
        "LowGrayLevelRunEmphasis": "lgre", "HighGrayLevelRunEmphasis": "hgre",
        "ShortRunLowGrayLevelEmphasis": "srlge", "ShortRunHighGrayLevelEmphasis": "srhge",
        "LongRunLowGrayLevelEmphasis": "lrlge", "LongRunHighGrayLevelEmphasis": "lrhge",
        "GrayLevelNonUniformity": "glnu", "GrayLevelNonUniformityNormalized": "glnu_norm",
        "RunLengthNonUniformity": "rlnu", "RunLengthNonUniformityNormalized": "rlnu_norm",
        "RunPercentage": "r_perc", "GrayLevelVariance": "gl_var", "RunVariance": "rl_var",
        "RunEntropy": "rl_entr",
    }.items()},
    "glszm": {k: (f"glszm_{v}_3d_merged", "same") for k, v in {
        "SmallAreaEmphasis": "sze", "LargeAreaEmphasis": "lze",
        "LowGrayLevelZoneEmphasis": "lgze", "HighGrayLevelZoneEmphasis": "hgze",
        "SmallAreaLowGrayLevelEmphasis": "szlge", "SmallAreaHighGrayLevelEmphasis": "szhge",
        "LargeAreaLowGrayLevelEmphasis": "lzlge", "LargeAreaHighGrayLevelEmphasis": "lzhge",
        "GrayLevelNonUniformity": "glnu", "GrayLevelNonUniformityNormalized": "glnu_norm",
        "SizeZoneNonUniformity": "zsnu", "SizeZoneNonUniformityNormalized": "zsnu_norm",
        "ZonePercentage": "z_perc", "GrayLevelVariance": "gl_var", "ZoneVariance": "zs_var",
        "ZoneEntropy": "zs_entr",
    }.items()},
    "gldm": {k: (f"ngldm_{v}_3d_merged", "same") for k, v in {
        "SmallDependenceEmphasis": "lde", "LargeDependenceEmphasis": "hde",
        "LowGrayLevelEmphasis": "lgce", "HighGrayLevelEmphasis": "hgce",
        "SmallDependenceLowGrayLevelEmphasis": "ldlge",
        "SmallDependenceHighGrayLevelEmphasis": "ldhge",
        "LargeDependenceLowGrayLevelEmphasis": "hdlge",
        "LargeDependenceHighGrayLevelEmphasis": "hdhge",
        "GrayLevelNonUniformity": "glnu", "DependenceNonUniformity": "dcnu",
        "DependenceNonUniformityNormalized": "dcnu_norm", "GrayLevelVariance": "gl_var",
        "DependenceVariance": "dc_var", "DependenceEntropy": "dc_entr",
    }.items()},
    "ngtdm": {k: (f"ngtdm_{k.lower()}_3d_merged", "same")
              for k in ("Coarseness", "Contrast", "Busyness", "Complexity", "Strength")},
    "shape": {k: (f"morph_{v}", "same") for k, v in {
        "MeshVolume": "volume", "VoxelVolume": "voxel_volume",
        "SurfaceArea": "surface_area", "SurfaceVolumeRatio": "surface_to_volume",
        "Sphericity": "sphericity", "Maximum3DDiameter": "max_diameter",
        "MajorAxisLength": "major_axis", "MinorAxisLength": "minor_axis",
        "LeastAxisLength": "least_axis", "Elongation": "elongation", "Flatness": "flatness",
    }.items()},
}
#: pyradiomics features with no IBSI counterpart (not compared)
UNPAIRED = ("glcm_MCC", "shape_Maximum2DDiameterSlice", "shape_Maximum2DDiameterColumn",
            "shape_Maximum2DDiameterRow")
