#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (browser tests), Orthanc with
# its DICOMweb plugin (PACS round trip) and dicom3tools (dciodvfy validates the DICOM we
# write). As root, install what is missing; as anyone else, name it and carry on (outside
# CI those tests then skip; under CI=true they fail, as they should).
set -euo pipefail

# package -> a file it installs (what the tests look for)
declare -A PROBE=(
    [chromium]=/usr/bin/chromium
    [orthanc]=/usr/sbin/Orthanc
    [orthanc-dicomweb]=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
    [dicom3tools]=/usr/bin/dciodvfy
)

missing=()
for pkg in chromium orthanc orthanc-dicomweb dicom3tools; do
    [ -e "${PROBE[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts Orthanc as a service on install; the tests start their own on free ports.
    if command -v service >/dev/null 2>&1; then service orthanc stop >/dev/null 2>&1 || true; fi
else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "  install them as root: apt-get install -y ${missing[*]}" >&2
    echo "  (the tests that need them skip outside CI and fail under CI=true)" >&2
fi
