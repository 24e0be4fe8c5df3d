"""Times of a PET series for decay correction: DICOM date/time values, scan start, injection, frame timing.

Rules from the IBSI SUV manual (Vácha et al.) and the QIBA vendor-neutral SUV pseudo-code. Every function
names the tag it used, so the conversion can say which rule it applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pydicom
from pydicom.valuerep import DA, DT, TM

GE_SCAN_DATETIME = (0x0009, 0x100D)  # GEMS_PETD_01 "PET scan_datetime"
GE_CREATOR = "GEMS_PETD_01"


class SuvError(ValueError):
    """A PET header that cannot give a trustworthy SUV; the message names the slice (`source`) and the tag."""


@dataclass(frozen=True)
class TimedValue:
    """A point in time and the DICOM rule it came from."""

    when: datetime
    rule: str


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    text = str(value).strip().strip("\x00").strip()
    return text or None


def element_text(ds: pydicom.Dataset, tag) -> str | None:
    """The value of `tag` (keyword or (group, element)) as stripped text, None when absent or empty."""
    element = ds.get(tag)
    if element is None:
        return None
    return _text(element.value if isinstance(element, pydicom.DataElement) else element)


def private_text(ds: pydicom.Dataset, tag: tuple[int, int], creator: str) -> str | None:
    """A private element's value, unless its block is reserved by another creator (another vendor's tag).

    Anonymised files often keep the element but drop the creator; a missing creator is accepted."""
    reserved_by = element_text(ds, (tag[0], tag[1] >> 8))
    if reserved_by is not None and reserved_by.upper() != creator.upper():
        return None
    return element_text(ds, tag)


def parse_datetime(text: str, source: str, tag: str) -> datetime:
    """A DICOM DT value as a naive datetime (an offset suffix, if any, is dropped: all times are local).

    Errors about dates never quote the value: a study date identifies the patient and must not reach a log."""
    try:
        return DT(text).replace(tzinfo=None)
    except ValueError:
        raise SuvError(f"{source}: {tag} is not a DICOM date-time (YYYYMMDDHHMMSS.FFFFFF)") from None


def parse_time(text: str, source: str, tag: str) -> time:
    try:
        return TM(text)
    except ValueError as error:
        raise SuvError(f"{source}: {tag} {text!r} is not a DICOM time: {error}") from None


def parse_date(text: str, source: str, tag: str) -> date:
    try:
        return DA(text)
    except ValueError:
        raise SuvError(f"{source}: {tag} is not a DICOM date (YYYYMMDD)") from None


def _date_time(ds: pydicom.Dataset, date_tag: str, time_tag: str, source: str,
               fallback_date: str | None = None) -> datetime | None:
    time_text = element_text(ds, time_tag)
    date_text = element_text(ds, date_tag) or fallback_date
    if time_text is None or date_text is None:
        return None
    return datetime.combine(parse_date(date_text, source, date_tag), parse_time(time_text, source, time_tag))


def series_datetime(ds: pydicom.Dataset, source: str) -> datetime | None:
    return _date_time(ds, "SeriesDate", "SeriesTime", source)


def acquisition_datetime(ds: pydicom.Dataset, source: str) -> datetime | None:
    """AcquisitionDateTime, else AcquisitionDate (or SeriesDate) with AcquisitionTime."""
    text = element_text(ds, "AcquisitionDateTime")
    if text is not None:
        return parse_datetime(text, source, "AcquisitionDateTime (0008,002A)")
    return _date_time(ds, "AcquisitionDate", "AcquisitionTime", source, element_text(ds, "SeriesDate"))


def average_count_time_s(frame_duration_s: float, decay_constant_per_s: float) -> float:
    """Time after the frame start at which the frame's mean activity equals the decaying activity (seconds)."""
    x = decay_constant_per_s * frame_duration_s
    if x < 1e-9:
        return frame_duration_s / 2
    return math.log(x / -math.expm1(-x)) / decay_constant_per_s


def _float(text: str, source: str, tag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SuvError(f"{source}: {tag} is {text!r}, not a number") from None


def frame_duration_s(ds: pydicom.Dataset, source: str) -> float:
    """ActualFrameDuration in seconds (the tag holds milliseconds)."""
    text = element_text(ds, "ActualFrameDuration")
    if text is None or _float(text, source, "ActualFrameDuration (0018,1242)") <= 0:
        raise SuvError(f"{source}: ActualFrameDuration (0018,1242) is {text!r}; needed to decay-correct the frame")
    return float(text) / 1000.0


def frame_start_from_reference(ds: pydicom.Dataset, decay_constant_per_s: float, source: str) -> datetime | None:
    """Series reference time back-computed from one slice: acquisition + mean-count time - FrameReferenceTime
    (IBSI manual, option 4); None when a needed tag is missing or FrameReferenceTime is 0 or less (it carries no
    reference: back-computing would put the start about half a frame late)."""
    acquired = acquisition_datetime(ds, source)
    reference_ms = element_text(ds, "FrameReferenceTime")
    if acquired is None or reference_ms is None or element_text(ds, "ActualFrameDuration") is None:
        return None
    reference_s = _float(reference_ms, source, "FrameReferenceTime (0054,1300)") / 1000.0
    if reference_s <= 0:  # no reference (QIBA, and the open-source SUV calculators): use the acquisition time
        return None
    t_avg = average_count_time_s(frame_duration_s(ds, source), decay_constant_per_s)
    return acquired + timedelta(seconds=t_avg - reference_s)


def scan_start(headers: list[pydicom.Dataset], sources: list[str], decay_constant_per_s: float) -> TimedValue:
    """The time the series is decay-corrected to (DecayCorrection START), by the QIBA order of rules.

    SeriesDate/SeriesTime unless later than the earliest acquisition (then modified after the scan); else GE's
    private scan datetime (0009,100D); else the series start back-computed from FrameReferenceTime and
    ActualFrameDuration of the earliest slice (IBSI option 4); else the earliest acquisition time (QIBA).
    """
    acquisitions = [(acquisition_datetime(ds, src), ds, src) for ds, src in zip(headers, sources, strict=True)]
    acquisitions = [a for a in acquisitions if a[0] is not None]
    earliest = min(acquisitions, key=lambda a: a[0]) if acquisitions else None
    series = series_datetime(headers[0], sources[0])
    if series is not None and (earliest is None or series <= earliest[0]):
        return TimedValue(series, "scan start = SeriesDate/SeriesTime (0008,0021/0031)")
    ge_text = private_text(headers[0], GE_SCAN_DATETIME, GE_CREATOR)
    if ge_text is not None:
        ge = parse_datetime(ge_text, sources[0], "GE private scan datetime (0009,100D)")
        return TimedValue(ge, "scan start = GE private scan datetime (0009,100D) (SeriesTime after acquisition)")
    if earliest is None:
        raise SuvError(
            f"{sources[0]}: neither SeriesDate/SeriesTime (0008,0021/0031) nor AcquisitionTime (0008,0032) is "
            "present; the time the images are decay-corrected to is unknown"
        )
    backcomputed = frame_start_from_reference(earliest[1], decay_constant_per_s, earliest[2])
    if backcomputed is not None:
        return TimedValue(
            backcomputed,
            "scan start = earliest AcquisitionTime + mean-count time - FrameReferenceTime (0054,1300) "
            "(SeriesTime after acquisition)",
        )
    return TimedValue(earliest[0], "scan start = earliest AcquisitionTime (0008,0032) (SeriesTime after acquisition)")


def injection_datetime(info: pydicom.Dataset, date_reference: datetime, source: str) -> TimedValue:
    """Administration time: RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the day of
    `date_reference` (the scan), moved a day back when that would put it after the scan (midnight crossing)."""
    text = element_text(info, "RadiopharmaceuticalStartDateTime")
    if text is not None:
        when = parse_datetime(text, source, "RadiopharmaceuticalStartDateTime (0018,1078)")
        return TimedValue(when, "injection = RadiopharmaceuticalStartDateTime (0018,1078)")
    text = element_text(info, "RadiopharmaceuticalStartTime")
    if text is None:
        raise SuvError(
            f"{source}: neither RadiopharmaceuticalStartDateTime (0018,1078) nor RadiopharmaceuticalStartTime "
            "(0018,1072) is present; the injection time is needed to decay-correct the dose"
        )
    when = datetime.combine(date_reference.date(), parse_time(text, source, "RadiopharmaceuticalStartTime"))
    if when > date_reference:
        return TimedValue(when - timedelta(days=1),
                          "injection = RadiopharmaceuticalStartTime (0018,1072) on the day before the scan (midnight)")
    return TimedValue(when, "injection = RadiopharmaceuticalStartTime (0018,1072) on the scan date")
