"""The six clinical descriptors: vocabulary, normalisation, encoding and ACR TI-RADS points.

This is the lowest layer of thyrocam: every other layer takes descriptors through
:func:`normalize_clinical` (validation happens here, once) and feeds the model with
:func:`encode_clinical_with_mask`. Everything public lives here; the submodules are
:mod:`~thyrocam.clinical.vocabulary` (values and normalisation),
:mod:`~thyrocam.clinical.encoding` (model input and ``cat_maps``) and
:mod:`~thyrocam.clinical.tirads` (DDTI grades and ACR TI-RADS 2017).

Example:
    >>> normalize_value("margins", "ill- defined")
    'ill defined'
    >>> vec, mask = encode_clinical_with_mask({"sex": "F", "age": "59"}, default_cat_maps())
    >>> vec.shape, mask.tolist()
    ((28,), [0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
"""

from thyrocam.clinical.encoding import (
    clinical_dim,
    default_cat_maps,
    encode_clinical_with_mask,
    feature_slices,
    fit_cat_maps,
    load_cat_maps,
    mask_slice,
    save_cat_maps,
)
from thyrocam.clinical.tirads import (
    LABELS,
    TIRADS_FEATURES,
    TIRADS_GRADES,
    TiradsResult,
    acr_tirads,
    normalize_tirads,
    tirads_to_label,
)
from thyrocam.clinical.vocabulary import (
    AGE_RANGE,
    CATEGORICAL_FIELDS,
    DDTI_SPELLINGS,
    FIELDS,
    VOCABULARY,
    normalize_clinical,
    normalize_value,
)

__all__ = [
    "FIELDS",
    "CATEGORICAL_FIELDS",
    "VOCABULARY",
    "AGE_RANGE",
    "DDTI_SPELLINGS",
    "TIRADS_GRADES",
    "LABELS",
    "TIRADS_FEATURES",
    "normalize_value",
    "normalize_clinical",
    "normalize_tirads",
    "tirads_to_label",
    "default_cat_maps",
    "fit_cat_maps",
    "save_cat_maps",
    "load_cat_maps",
    "clinical_dim",
    "encode_clinical_with_mask",
    "feature_slices",
    "mask_slice",
    "TiradsResult",
    "acr_tirads",
]
