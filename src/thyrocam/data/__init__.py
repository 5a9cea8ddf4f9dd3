"""Data: DDTI folders, CSV manifests, the synthetic generator, splits and the Dataset."""

from thyrocam.data.dataset import ThyroidDataset, sample_roi
from thyrocam.data.ddti import Case, View, read_ddti
from thyrocam.data.manifest import read_manifest
from thyrocam.data.samples import (
    LabelSource,
    Sample,
    cases_to_samples,
    label_counts,
    load_cases,
    outline_only_samples,
    prepare_samples,
    split_by_case,
)
from thyrocam.data.synth import SynthConfig, make_synthetic_ddti

__all__ = [
    "Case",
    "View",
    "read_ddti",
    "read_manifest",
    "LabelSource",
    "Sample",
    "load_cases",
    "cases_to_samples",
    "split_by_case",
    "label_counts",
    "prepare_samples",
    "outline_only_samples",
    "SynthConfig",
    "make_synthetic_ddti",
    "ThyroidDataset",
    "sample_roi",
]
