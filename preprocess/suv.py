"""SUV (body weight) from DICOM PET, by the IBSI SUV manual and the QIBA vendor-neutral rules.

SUVbw = modality value (RescaleSlope x stored + RescaleIntercept) x factor, with per-slice factors. Units BQML
(and Philips CNTS with an activity-concentration scale factor) use weight / decay-corrected dose; CNTS with
Philips' SUV scale factor uses it directly; GML (SUV already, of the SUVType given) and CM2ML (SUVbsa) are
turned back into SUVbw. Anything missing or absurd raises `SuvError` naming the series folder, the slice
(position and InstanceNumber, not the file name, which is often a UID) and the tag: no guessed SUV.

`python -m preprocess.suv DICOM_DIR OUT.nii.gz` writes the SUV volume and a JSON sidecar with the rule used.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from cache.cli import Command, exit_status
from preprocess.dicom_series import read_headers, read_series, series_files
from preprocess.suv_times import (
    SuvError,
    TimedValue,
    acquisition_datetime,
    average_count_time_s,
    element_text,
    frame_duration_s,
    injection_datetime,
    private_text,
    scan_start,
    series_datetime,
)

__all__ = ["SuvError", "SuvSettings", "SuvConversion", "suv_factor", "suv_conversion", "read_suv_series", "main"]

PHILIPS_SUV_SCALE = (0x7053, 0x1000)
PHILIPS_ACTIVITY_SCALE = (0x7053, 0x1009)
PHILIPS_CREATOR = "Philips PET Private Group"
MAX_UPTAKE_DELAY_S = 24 * 3600  # injection to scan; longer is a wrong date, not a late scan


@dataclass(frozen=True)
class SuvSettings:
    """Explicit fallbacks for PET headers that lack a value; each use is recorded in the provenance."""

    patient_weight_kg: float | None = field(
        default=None, metadata={"help": "weight in kg used when PatientWeight (0010,1030) is missing or 0"}
    )
    patient_height_m: float | None = field(
        default=None, metadata={"help": "height in m used when PatientSize (0010,1020) is missing (GML/CM2ML only)"}
    )


@dataclass(frozen=True)
class SuvConversion:
    """Factor from modality values of one PET instance to SUVbw, the rule that gave it, fallbacks used."""

    factor: float
    rule: str
    fallbacks: tuple[str, ...] = ()


def _number(ds: pydicom.Dataset, tag, source: str, name: str, creator: str | None = None) -> float | None:
    """A numeric element (of a private block reserved by `creator`, when given) as float; None when absent."""
    text = element_text(ds, tag) if creator is None else private_text(ds, tag, creator)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise SuvError(f"{source}: {name} is {text!r}, not a number") from None


def _weight_g(ds: pydicom.Dataset, settings: SuvSettings, source: str) -> tuple[float, tuple[str, ...], str]:
    """Patient weight in grams, fallbacks used, and a note on its unit; values over 1000 were entered in grams
    (IBSI manual)."""
    weight = _number(ds, "PatientWeight", source, "PatientWeight (0010,1030)")
    if weight is None or weight == 0:
        if settings.patient_weight_kg is None:
            raise SuvError(
                f"{source}: PatientWeight (0010,1030) is {'missing' if weight is None else '0'}; SUV needs the "
                "patient's weight: give it with --patient-weight-kg (SuvSettings.patient_weight_kg) if known"
            )
        fallback = f"patient_weight_kg={settings.patient_weight_kg} from settings"
        return settings.patient_weight_kg * 1000.0, (fallback,), ""
    grams = weight > 1000
    weight_kg = weight / 1000.0 if grams else weight
    if not 0.5 <= weight_kg <= 500:
        raise SuvError(f"{source}: PatientWeight (0010,1030) {weight!r} is not a plausible weight in kg")
    return weight_kg * 1000.0, (), " (PatientWeight read as grams)" if grams else ""


def _height_cm(ds: pydicom.Dataset, settings: SuvSettings, source: str) -> tuple[float, tuple[str, ...]]:
    height = _number(ds, "PatientSize", source, "PatientSize (0010,1020)")
    fallbacks: tuple[str, ...] = ()
    if height is None or height == 0:
        if settings.patient_height_m is None:
            raise SuvError(f"{source}: PatientSize (0010,1020) is missing; it is needed to undo this SUV type; give "
                           "it with --patient-height-m (SuvSettings.patient_height_m) if known")
        height, fallbacks = settings.patient_height_m, (f"patient_height_m={settings.patient_height_m} from settings",)
    if not 0.3 <= height <= 2.8:
        raise SuvError(f"{source}: PatientSize (0010,1020) {height!r} is not a plausible height in m")
    return height * 100.0, fallbacks


def _sex_mean(ds: pydicom.Dataset, source: str, male: float, female: float) -> float:
    """Sex-specific value; sex "O" takes the mean of both (IBSI manual)."""
    sex = (element_text(ds, "PatientSex") or "").upper()
    if sex not in ("M", "F", "O"):
        raise SuvError(f"{source}: PatientSex (0010,0040) is {sex or 'missing'!r}; this SUV type needs M, F or O")
    return {"M": male, "F": female, "O": (male + female) / 2}[sex]


def _normaliser_g(suv_type: str, weight_kg: float, height_cm: float, ds: pydicom.Dataset, source: str) -> float:
    """Mass (g) or area (cm2) an SUV of `suv_type` divided by instead of the body weight (Sugawara; Du Bois)."""
    w, h = weight_kg, height_cm
    if suv_type == "BSA":
        return 71.84 * w**0.425 * h**0.725  # Du Bois, in cm2: 0.007184 m2 x 10^4
    if suv_type == "LBM":
        kg = _sex_mean(ds, source, 1.10 * w - 120 * (w / h) ** 2, 1.07 * w - 148 * (w / h) ** 2)
    elif suv_type == "LBMJAMES128":
        kg = _sex_mean(ds, source, 1.10 * w - 128 * (w / h) ** 2, 1.07 * w - 148 * (w / h) ** 2)
    elif suv_type == "LBMJANMA":
        bmi = w / (h / 100) ** 2
        kg = _sex_mean(ds, source, 9270 * w / (6680 + 216 * bmi), 9270 * w / (8780 + 244 * bmi))
    elif suv_type == "IBW":
        kg = _sex_mean(ds, source, 48.0 + 1.06 * (h - 152), 45.5 + 0.91 * (h - 152))
    else:
        raise SuvError(f"{source}: SUVType (0054,1006) {suv_type!r} is not one of BW, LBM, LBMJAMES128, LBMJANMA, "
                       "IBW, BSA")
    if kg <= 0:
        raise SuvError(f"{source}: SUVType {suv_type} gives a non-positive mass for this weight and height")
    return kg * 1000.0


def _normalised_to_bw(ds: pydicom.Dataset, units: str, settings: SuvSettings, source: str) -> SuvConversion:
    """Factor from an already normalised SUV (Units GML or CM2ML) to SUVbw: weight / normaliser."""
    suv_type = (element_text(ds, "SUVType") or ("BSA" if units == "CM2ML" else "BW")).upper()
    if (units == "CM2ML") != (suv_type == "BSA"):
        raise SuvError(f"{source}: Units (0054,1001) {units} does not fit SUVType (0054,1006) {suv_type}")
    if suv_type == "BW":
        return SuvConversion(1.0, "Units GML, SUVType BW: values are SUVbw")
    weight_g, fallbacks, _ = _weight_g(ds, settings, source)
    height_cm, height_fallbacks = _height_cm(ds, settings, source)
    normaliser = _normaliser_g(suv_type, weight_g / 1000.0, height_cm, ds, source)
    return SuvConversion(weight_g / normaliser, f"Units {units}, SUVType {suv_type}: x weight / {suv_type}",
                         fallbacks + height_fallbacks)


def _check_corrections(ds: pydicom.Dataset, decay_correction: str, source: str) -> None:
    corrected = ds.get("CorrectedImage")
    values = [] if corrected is None else [corrected] if isinstance(corrected, str) else list(corrected)
    flags = {str(v).strip().upper() for v in values}
    if "ATTN" not in flags:
        raise SuvError(f"{source}: CorrectedImage (0028,0051) {sorted(flags)} lacks ATTN: the image is not "
                       "attenuation corrected, so its values are no activity concentration")
    if decay_correction != "NONE" and "DECY" not in flags:
        raise SuvError(f"{source}: CorrectedImage (0028,0051) {sorted(flags)} lacks DECY but DecayCorrection "
                       f"(0054,1102) is {decay_correction}")
    if decay_correction == "NONE" and "DECY" in flags:
        raise SuvError(f"{source}: CorrectedImage (0028,0051) has DECY but DecayCorrection (0054,1102) is NONE")


def _dose_bq(info: pydicom.Dataset, source: str) -> tuple[float, str]:
    """Injected dose in Bq and a note on its unit; values under 10^4 are MBq (IBSI manual: the two peaks of
    real doses at ~4e2 and ~4e8)."""
    dose = _number(info, "RadionuclideTotalDose", source, "RadionuclideTotalDose (0018,1074)")
    if dose is None or dose <= 0:
        raise SuvError(f"{source}: RadionuclideTotalDose (0018,1074) is {dose!r}; SUV needs the injected dose")
    if dose < 1e4:
        return dose * 1e6, " (RadionuclideTotalDose read as MBq)"
    if dose >= 1e6:
        return dose, ""
    raise SuvError(f"{source}: RadionuclideTotalDose (0018,1074) {dose} is neither a plausible MBq (< 10^4) "
                   "nor a plausible Bq (>= 10^6) value")


def _radiopharmaceutical(ds: pydicom.Dataset, source: str) -> tuple[pydicom.Dataset, float]:
    """The radiopharmaceutical item and its decay constant (1/s)."""
    items = ds.get("RadiopharmaceuticalInformationSequence")
    if not items:
        raise SuvError(f"{source}: RadiopharmaceuticalInformationSequence (0054,0016) is missing: no dose, "
                       "injection time or half-life")
    info = items[0]
    half_life = _number(info, "RadionuclideHalfLife", source, "RadionuclideHalfLife (0018,1075)")
    if half_life is None or half_life <= 0:
        raise SuvError(f"{source}: RadionuclideHalfLife (0018,1075) is {half_life!r}; it is needed for decay")
    return info, math.log(2) / half_life


def _unit_scale(ds: pydicom.Dataset, units: str, source: str) -> tuple[float, bool, str]:
    """(scale, gives SUV, rule) of BQML or CNTS values: 1 for BQML; for Philips CNTS the SUV scale factor
    (straight to SUVbw) or else the activity-concentration scale factor (to Bq/ml)."""
    if units == "BQML":
        return 1.0, False, "Units BQML"
    suv_scale = _number(ds, PHILIPS_SUV_SCALE, source, "Philips SUV scale factor (7053,1000)", PHILIPS_CREATOR)
    if suv_scale:
        return suv_scale, True, "Units CNTS, Philips SUV scale factor (7053,1000)"
    activity_scale = _number(ds, PHILIPS_ACTIVITY_SCALE, source, "Philips activity scale factor (7053,1009)",
                             PHILIPS_CREATOR)
    if activity_scale:
        return activity_scale, False, "Units CNTS x Philips activity concentration scale factor (7053,1009)"
    raise SuvError(f"{source}: Units (0054,1001) CNTS without a non-zero Philips SUV scale factor (7053,1000) or "
                   "activity concentration scale factor (7053,1009); counts cannot be turned into SUV")


def suv_conversion(ds: pydicom.Dataset, settings: SuvSettings = SuvSettings(), start: TimedValue | None = None,
                   source: str | None = None) -> SuvConversion:
    """The SUVbw factor of one PET instance and the rule used.

    `start` is the series' scan start (`suv_times.TimedValue`) for DecayCorrection START, computed from all
    slices by `read_suv_series`; when None it comes from this instance alone.
    """
    source = source or slice_source(ds)
    intercept = _number(ds, "RescaleIntercept", source, "RescaleIntercept (0028,1052)") or 0.0
    if intercept != 0:
        raise SuvError(f"{source}: RescaleIntercept (0028,1052) is {intercept}, but PET requires 0 (IBSI manual: "
                       "exclude such series)")
    units = (element_text(ds, "Units") or "").upper()
    if units not in ("BQML", "CNTS", "GML", "CM2ML"):
        raise SuvError(f"{source}: Units (0054,1001) {units or 'missing'!r} cannot be converted to SUV; "
                       "supported: BQML, CNTS (Philips), GML, CM2ML")
    decay_correction = (element_text(ds, "DecayCorrection") or "").upper()
    if decay_correction not in ("START", "ADMIN", "NONE"):
        raise SuvError(f"{source}: DecayCorrection (0054,1102) is {decay_correction or 'missing'!r}; "
                       "expected START, ADMIN or NONE")
    _check_corrections(ds, decay_correction, source)
    if units in ("GML", "CM2ML"):
        return _normalised_to_bw(ds, units, settings, source)
    activity_scale, gives_suv, unit_rule = _unit_scale(ds, units, source)
    if gives_suv:
        return SuvConversion(activity_scale, unit_rule)
    weight_g, fallbacks, weight_note = _weight_g(ds, settings, source)
    info, decay_constant = _radiopharmaceutical(ds, source)
    dose_bq, dose_note = _dose_bq(info, source)
    unit_rule += weight_note + dose_note
    if decay_correction == "ADMIN":
        return SuvConversion(activity_scale * weight_g / dose_bq,
                             f"{unit_rule}, DecayCorrection ADMIN: weight / dose", fallbacks)
    if decay_correction == "START":
        start = start or scan_start([ds], [source], decay_constant)
        injected = injection_datetime(info, start.when, source)
        delay_s = _uptake_delay_s(start.when, injected.when, source)
        return SuvConversion(activity_scale * weight_g / (dose_bq * math.exp(-decay_constant * delay_s)),
                             f"{unit_rule}, DecayCorrection START: weight / dose decayed to the scan start; "
                             f"{start.rule}; {injected.rule}", fallbacks)
    acquired = acquisition_datetime(ds, source)
    if acquired is None:
        raise SuvError(f"{source}: AcquisitionTime (0008,0032) is missing; DecayCorrection NONE needs each frame's "
                       "acquisition time")
    injected = injection_datetime(info, series_datetime(ds, source) or acquired, source)
    mean_count_s = average_count_time_s(frame_duration_s(ds, source), decay_constant)
    delay_s = _uptake_delay_s(acquired, injected.when, source) + mean_count_s
    return SuvConversion(activity_scale * weight_g / dose_bq * math.exp(decay_constant * delay_s),
                         f"{unit_rule}, DecayCorrection NONE: each frame decayed back to the injection from its "
                         f"AcquisitionTime + mean-count time of ActualFrameDuration; {injected.rule}", fallbacks)


def _uptake_delay_s(scan, injection, source: str) -> float:
    delay_s = (scan - injection).total_seconds()
    if not 0 <= delay_s <= MAX_UPTAKE_DELAY_S:
        # Times of day only: a study date identifies the patient and must not reach a log.
        raise SuvError(f"{source}: injection at {injection:%H:%M:%S} to scan at {scan:%H:%M:%S} is "
                       f"{delay_s / 3600:.2f} h; check RadiopharmaceuticalStart(Date)Time (0018,1078/1072) and the "
                       "series/acquisition times")
    return delay_s


def slice_source(ds: pydicom.Dataset, folder: str | Path | None = None, position: int | None = None,
                 n_slices: int | None = None) -> str:
    """How a message names one PET slice: its series folder, place in the series and InstanceNumber (0020,0013).

    Never the file name: DICOM files are often named by their SOP Instance UID, which must not reach logs.
    """
    filename = getattr(ds, "filename", None)
    folder = folder if folder is not None else (Path(filename).parent if isinstance(filename, (str, Path)) else None)
    place = f"slice {position + 1} of {n_slices}" if position is not None and n_slices is not None else "slice"
    where = f"{folder}, {place}" if folder is not None else f"PET dataset, {place}"
    return f"{where} (InstanceNumber {element_text(ds, 'InstanceNumber') or 'missing'})"


def suv_factor(ds: pydicom.Dataset, settings: SuvSettings = SuvSettings()) -> float:
    """Factor turning the modality values (RescaleSlope x stored + RescaleIntercept) of one PET instance to SUVbw."""
    return suv_conversion(ds, settings).factor


@dataclass(frozen=True)
class SuvProvenance:
    """How a SUV volume was made: no patient identifiers, only rules, factors and the input folder."""

    input: str
    n_slices: int
    rules: tuple[str, ...]
    factor_min: float
    factor_max: float
    fallbacks: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def read_suv_series(folder: str | Path, settings: SuvSettings = SuvSettings(),
                    series_uid: str | None = None) -> tuple[sitk.Image, SuvProvenance]:
    """SUVbw volume (float32, geometry of the series, no metadata) of the PET series in `folder`."""
    files = series_files(Path(folder), series_uid, modality=None if series_uid else "PT")
    headers = read_headers(files, Path(folder))
    sources = [slice_source(ds, folder, k, len(files)) for k, ds in enumerate(headers)]
    for ds, source in zip(headers, sources, strict=True):
        if element_text(ds, "Modality") != "PT":
            raise SuvError(f"{source}: Modality (0008,0060) is {element_text(ds, 'Modality')!r}, not PT")
        if int(_number(ds, "NumberOfFrames", source, "NumberOfFrames (0028,0008)") or 1) != 1:
            raise SuvError(f"{source}: multi-frame PET (NumberOfFrames (0028,0008) > 1) is not supported")
    start = None
    if (element_text(headers[0], "DecayCorrection") or "").upper() == "START":
        _, decay_constant = _radiopharmaceutical(headers[0], sources[0])
        start = scan_start(headers, sources, decay_constant)
    conversions = [suv_conversion(ds, settings, start, source) for ds, source in zip(headers, sources, strict=True)]
    rules = tuple(dict.fromkeys(c.rule for c in conversions))
    if len(rules) > 1:
        raise SuvError(f"{folder}: the slices of one series need different conversions ({' | '.join(rules)}); "
                       "refusing a mixed series")
    factors = np.array([c.factor for c in conversions], dtype=np.float64)
    image = read_series(files, sitk.sitkFloat64)
    values = sitk.GetArrayViewFromImage(image)
    if values.shape[0] != len(files):
        raise SuvError(f"{folder}: {len(files)} files but {values.shape[0]} slices; multi-frame files are not "
                       "supported")
    suv = sitk.GetImageFromArray((values * factors[:, None, None]).astype(np.float32))
    suv.CopyInformation(image)
    fallbacks = tuple(dict.fromkeys(f for c in conversions for f in c.fallbacks))
    return suv, SuvProvenance(str(folder), len(files), rules, float(factors.min()), float(factors.max()), fallbacks)


def write_suv(image: sitk.Image, provenance: SuvProvenance, out: Path) -> Path:
    """Write the SUV image (no DICOM tags in it) and a JSON sidecar `<stem>.suv.json` with the provenance."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(out), useCompression=True)
    sidecar = out.with_name(out.name.removesuffix(".gz").rsplit(".", 1)[0] + ".suv.json")
    sidecar.write_text(json.dumps({"quantity": "SUVbw", **provenance.as_dict()}, indent=2) + "\n")
    return sidecar


@dataclass(frozen=True)
class SuvFiles:
    """The PET series to convert and the image to write."""

    dicom_dir: str = field(default="", metadata={"args": ["dicom_dir"], "help": "folder of the PET series"})
    out: str = field(default="", metadata={"args": ["out"], "help": "output image, e.g. suv.nii.gz"})
    series_uid: str = field(default="", metadata={"help": "SeriesInstanceUID when the folder holds several"})


def convert(files: SuvFiles, settings: SuvSettings) -> int:
    """Write the SUV image and its provenance sidecar; print the factor, rules and fallbacks used."""
    image, provenance = read_suv_series(Path(files.dicom_dir), settings, files.series_uid or None)
    sidecar = write_suv(image, provenance, Path(files.out))
    print(f"{files.out}: SUVbw, {provenance.n_slices} slices, factor {provenance.factor_min:.6g}"
          + (f"..{provenance.factor_max:.6g}" if provenance.factor_max != provenance.factor_min else ""))
    for rule in provenance.rules:
        print(f"  rule: {rule}")
    for fallback in provenance.fallbacks:
        print(f"  fallback: {fallback}")
    print(f"  provenance: {sidecar}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m preprocess.suv DICOM_DIR OUT.nii.gz`: exit 0, or 1 with the reason on one `error:` line."""
    command = Command("python -m preprocess.suv", "Convert a DICOM PET series to an SUVbw volume (NIfTI/NRRD/MHA).",
                      (SuvFiles, SuvSettings), convert, required=("dicom_dir", "out"), print_settings=False)
    return exit_status(command.run, argv)


if __name__ == "__main__":
    sys.exit(main())
