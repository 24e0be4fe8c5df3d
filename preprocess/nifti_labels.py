"""Label tables in NIfTI header extensions, as TotalSegmentator v2 writes them (a CaretExtension XML with
`<Label Key="16" ...><![CDATA[trachea]]></Label>` entries). SimpleITK does not expose extensions, so the header
is read (and written) here with the standard library."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import SimpleITK as sitk

_LABEL = re.compile(r'<Label\s+Key="(\d+)"[^>]*>\s*(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))\s*</Label>', re.DOTALL)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _header_and_extensions(path: Path) -> tuple[bytes, str, int] | None:
    """The bytes before the voxel data, the byte order and sizeof_hdr (348 NIfTI-1, 540 NIfTI-2); None if
    the file is not NIfTI."""
    with _open(path) as f:
        first = f.read(552)
        for order in ("<", ">"):
            size = struct.unpack(order + "i", first[:4])[0]
            if size == 348:
                vox_offset = int(struct.unpack(order + "f", first[108:112])[0])
                break
            if size == 540:
                vox_offset = int(struct.unpack(order + "q", first[168:176])[0])
                break
        else:
            return None
        rest = f.read(max(vox_offset - len(first), 0))
    return (first + rest)[:vox_offset], order, size


def read_label_extension(path: Path) -> dict[int, str] | None:
    """Label id -> name from the file's header extension; None when the file has no label table."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    found = _header_and_extensions(path)
    if found is None:
        return None
    data, order, size = found
    offset = size + 4
    if len(data) < offset or data[size] == 0:
        return None
    labels: dict[int, str] = {}
    while offset + 8 <= len(data):
        esize, _ecode = struct.unpack(order + "ii", data[offset:offset + 8])
        if esize < 8:
            break
        text = data[offset + 8:offset + esize].decode("utf-8", errors="replace")
        for key, cdata, plain in _LABEL.findall(text):
            name = (cdata or plain).strip()
            if name:
                labels[int(key)] = name
        offset += esize
    return labels or None


def write_with_label_extension(image: sitk.Image, path: Path, labels: dict[int, str]) -> None:
    """Write a label image as NIfTI-1 with a label table extension (as TotalSegmentator v2 does)."""
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a label table extension needs a .nii or .nii.gz file")
    plain = path.with_name(path.name.removesuffix(".gz") + ".tmp.nii")
    sitk.WriteImage(image, str(plain), useCompression=False)
    raw = plain.read_bytes()
    plain.unlink()
    entries = "".join(f'<Label Key="{key}"><![CDATA[{name}]]></Label>\n' for key, name in sorted(labels.items()))
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CaretExtension><VolumeInformation Index="0"><LabelTable>\n'
           f"{entries}</LabelTable></VolumeInformation></CaretExtension>").encode()
    content = xml + b"\x00" * (-(len(xml) + 8) % 16)
    extension = struct.pack("<ii", len(content) + 8, 0) + content
    header = bytearray(raw[:348])
    old_offset = int(struct.unpack("<f", raw[108:112])[0])
    new_offset = 352 + len(extension)
    header[108:112] = struct.pack("<f", float(new_offset))
    data = bytes(header) + b"\x01\x00\x00\x00" + extension + raw[old_offset:]
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
