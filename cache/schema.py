"""Names of the HDF5 cache, schema version 2: every dataset path and attribute name as a constant.

One file per scan, `<cache_root>/<dataset>/<patient_id>__<scan_id>.h5`. docs/architecture.md#the-cache-contract is the
summary and `cache/README.md` the full description; the writer, the reader and `python -m cache` use only these names.
Arrays are (z, y, x); grid attributes follow ITK (x, y, z), see `cache.grid.Grid`.
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # 2: attribute sets under /checksums, every scan stored in LPS
FILE_SUFFIX = ".h5"
# Temporary files of the atomic writer: `.<stem>.<host>.<pid>.<random>.h5.tmp` in the same folder (git ignores them).
TEMP_SUFFIX = ".h5.tmp"
KEY_SEPARATOR = "__"

# Root attributes.
SCHEMA_VERSION_ATTR = "schema_version"
DATASET_ATTR = "dataset"
PATIENT_ID_ATTR = "patient_id"
SCAN_ID_ATTR = "scan_id"
CREATED_ATTR = "created"  # ISO 8601 UTC time the file was written
PACKAGE_VERSION_ATTR = "package_version"
SETTINGS_HASH_ATTR = "settings_hash"  # cache.settings.settings_hash of every preprocessing setting
INPUTS_HASH_ATTR = "inputs_hash"  # digest of the content of every input file
RULE_SET_ATTR = "rule_set"
# So that a refusal can name the setting or input that differs: the settings as JSON
# ({class name: {field: value}}) and the content digest per input role ({"ct": ..., "pet": ...}). Roles, never
# paths: a path may hold a patient's name.
SETTINGS_ATTR = "settings"
INPUTS_ATTR = "inputs"
ROOT_ATTRS = (
    SCHEMA_VERSION_ATTR, DATASET_ATTR, PATIENT_ID_ATTR, SCAN_ID_ATTR, CREATED_ATTR, PACKAGE_VERSION_ATTR,
    SETTINGS_HASH_ATTR, INPUTS_HASH_ATTR, RULE_SET_ATTR, SETTINGS_ATTR, INPUTS_ATTR,
)

# Images: contiguous, unchunked, uncompressed (an exported copy may be compressed), same grid.
CT = "image/ct"  # int16 HU
SUV = "image/suv"  # float32 SUV (body weight)
GRID_ATTRS = ("spacing", "origin", "direction")  # on both image datasets, cache.grid.Grid.to_attrs()

# Stations.
STATIONS_GROUP = "stations"
STATION_LABELS = "stations/labels"  # uint8 fused station codes, 0 = background
STATION_INDEX = "index"  # int32 flat voxel indices (C order over (z, y, x)) with weight > 0
STATION_CDF = "cdf"  # float64 cumulative normalised weights over `index`, last value exactly 1.0
CODE_ATTR = "code"
CENTROID_VOX_ATTR = "centroid_vox"  # (z, y, x) float voxel coordinates
CENTROID_MM_ATTR = "centroid_mm"  # (x, y, z) physical point, mm
BBOX_ATTR = "bbox"  # (z0, y0, x0, z1, y1, x1), half-open voxel box of the fused station
VOLUME_ML_ATTR = "volume_ml"
SUV_MAX_ATTR = "suv_max"
SUV_MEAN_ATTR = "suv_mean"
VOTE_AGREEMENT_ATTR = "vote_agreement"  # mean fraction of atlases voting for the station inside it
STATION_ATTRS = (
    CODE_ATTR, CENTROID_VOX_ATTR, CENTROID_MM_ATTR, BBOX_ATTR, VOLUME_ML_ATTR, SUV_MAX_ATTR, SUV_MEAN_ATTR,
    VOTE_AGREEMENT_ATTR,
)

# Labels (from the manifest). Unknown values: tumor_side "" and N-stage -1.
LABELS_GROUP = "labels"
TUMOR_SIDE_ATTR = "tumor_side"
N_CLINICAL_ATTR = "n_clinical"
N_PATHOLOGICAL_ATTR = "n_pathological"
STATION_CLINICAL = "labels/station_clinical"  # int8[17]: 1 malignant, 0 benign, -1 unknown
STATION_PATHOLOGICAL = "labels/station_pathological"
UNKNOWN_N = -1

QC_GROUP = "qc"  # nested groups of numeric attributes: registration metrics per atlas and stage, timings
QC_TIMINGS_GROUP = "qc/timings_s"
# Memory of the scan's preprocessing: peak_rss_gib (resident, CPU), cuda_peak_gib (torch's peak on CUDA), the
# registration's estimate_gib and budget_gib, atlas_batch (atlases registered at once), peak_is_per_scan (0: the
# peak counts from the worker's start, where the system could not reset it).
QC_MEMORY_GROUP = "qc/memory"
QC_PEAK_RSS_ATTR = "peak_rss_gib"
QC_CUDA_PEAK_ATTR = "cuda_peak_gib"
# The registration summed up after the deformable stage: driving_dice and held_out_dice (means over atlases of the
# structure Dice of groups that drove the registration and of groups held out of it), held_out_dice_min (worst
# atlas), jacobian_min and jacobian_max (over atlases), the preset's limits limit_held_out_dice_min,
# limit_jacobian_min and limit_jacobian_max, and `flags` (str: "held_out_dice", "jacobian", both, or "" within
# the limits).
QC_REGISTRATION_CHECK_GROUP = "qc/registration_check"
QC_FLAGS_ATTR = "flags"
LESIONS = "lesions"  # optional uint8 external lesion mask
# Attribute per dataset path ("image/ct") and per object's attribute set ("@labels", "@/" for the root): hex
# content digest (cache.checksums).
CHECKSUMS_GROUP = "checksums"


def cache_file_name(patient_id: str, scan_id: str) -> str:
    """File name of a scan's cache file, `<patient_id>__<scan_id>.h5` (ManifestRow.key plus the suffix)."""
    return f"{patient_id}{KEY_SEPARATOR}{scan_id}{FILE_SUFFIX}"


def station_group(name: str) -> str:
    """Group of one station's attributes and sampling tables, e.g. `stations/4R`."""
    return f"{STATIONS_GROUP}/{name}"


def rebuild_command(dataset: str) -> str:
    """The command that rebuilds a dataset's cache, quoted in every refusal."""
    return f"python -m preprocess --dataset {dataset} --force"
