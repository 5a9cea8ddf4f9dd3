"""Decode and validate images (ordinary files and DICOM), and the one preprocessing definition.

Every face of thyrocam (training, evaluation, CLI, web, notebook) goes through
:class:`Preprocessing`, which turns a frame into the network input *and* records
where that input sits in the frame (:class:`FrameMapping`), so a CAM computed on
the input can be put back on the original frame exactly.

Modules:

* :mod:`~thyrocam.imaging.decode` — bytes/path/file/PIL -> an 8-bit RGB frame,
  recognising DICOM by content (:func:`load_frame` also returns the ultrasound
  tissue region and the pixel spacing).
* :mod:`~thyrocam.imaging.dicom` — DICOM pixel decoding, colour spaces, frames,
  ``SequenceOfUltrasoundRegions``.
* :mod:`~thyrocam.imaging.preprocess` — the three preprocessing modes and the
  mapping back to the frame.
* :mod:`~thyrocam.imaging.geometry` — boxes and nodule outlines.
* :mod:`~thyrocam.imaging.texture` — plain statistics of a nodule inside its outline.
"""

from thyrocam.imaging.decode import DEFAULT_MAX_PIXELS, Frame, ImageSource, load_frame, load_image
from thyrocam.imaging.dicom import looks_like_dicom
from thyrocam.imaging.geometry import (
    Box,
    box_iou,
    nodule_box,
    outline_boxes,
    outlines_by_area,
    parse_box,
    polygons_bbox,
    polygons_to_mask,
)
from thyrocam.imaging.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS_MODES,
    FrameMapping,
    Preprocessing,
    denormalize,
    preprocess_image,
    to_tensor,
)
from thyrocam.imaging.texture import OUTLINE_STATISTICS, outline_statistics

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_MAX_PIXELS",
    "PREPROCESS_MODES",
    "Box",
    "box_iou",
    "ImageSource",
    "Frame",
    "FrameMapping",
    "Preprocessing",
    "load_frame",
    "load_image",
    "looks_like_dicom",
    "preprocess_image",
    "to_tensor",
    "denormalize",
    "polygons_to_mask",
    "polygons_bbox",
    "nodule_box",
    "outline_boxes",
    "outlines_by_area",
    "parse_box",
    "OUTLINE_STATISTICS",
    "outline_statistics",
]
