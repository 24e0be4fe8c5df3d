"""Attribute digests: what differs in a file's attributes differs in its digest."""

import h5py
import numpy as np

from cache.checksums import attrs_digest


def test_two_different_invalid_byte_strings_have_different_digests():
    assert attrs_digest({"a": np.bytes_(b"\xff")}) != attrs_digest({"a": np.bytes_(b"\xfe")})


def test_a_byte_string_and_the_same_text_have_different_digests():
    assert attrs_digest({"a": b"N1"}) != attrs_digest({"a": "N1"})


def test_a_byte_attribute_read_back_from_hdf5_keeps_its_digest(tmp_path):
    path = tmp_path / "bytes.h5"
    with h5py.File(path, "w") as f:
        f.attrs["a"] = np.bytes_(b"\xff\x00N1")
    with h5py.File(path, "r") as f:
        assert attrs_digest(dict(f.attrs)) == attrs_digest({"a": b"\xff\x00N1"})
