"""Hospital integration above :mod:`thyrocam.predictor`: DICOM results and a PACS client.

* :mod:`~thyrocam.dicom.results` — an explanation as a Secondary Capture (the
  overlay) and a Comprehensive SR (the numbers), with highdicom.
* :mod:`~thyrocam.dicom.pacs` — find, fetch, explain and store back over
  DICOMweb (QIDO-RS, WADO-RS, STOW-RS), with dicomweb-client.

Reading DICOM input lives lower, in :mod:`thyrocam.imaging.dicom`: every layer
accepts DICOM images without importing highdicom or dicomweb-client.
"""

from thyrocam.dicom.results import DicomResults, build_results

__all__ = ["DicomResults", "build_results"]
