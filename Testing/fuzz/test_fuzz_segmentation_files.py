"""Seeded fuzzing of the DICOM SEG and RTSTRUCT readers (issue 13): malformed files give the project's error
naming the file, never another exception.

Each case takes one valid file (a BINARY SEG and a FRACTIONAL SEG from ``seg_factory``, an RTSTRUCT from our
writer on a CT of ``dicom_factory``), applies one mutation anywhere in its data set, nested sequences included
(an element deleted; replaced, undecoded, by an extreme or malformed value of its VR or of another VR; a
sequence emptied, or an item duplicated), or to its bytes (the file cut at a random length; random bytes
flipped), and runs what the manifest and the pipeline run on a segmentation: ``segment_names`` (header) and
``read_segmentation`` (voxels; for the RTSTRUCT onto its CT, after ``find_reference`` and
``check_on_reference``). The oracle: success, or a LuDoseResponseError whose message names the file; any
other exception fails the case. A success must give finite, non-negative volumes.

``LUDR_FUZZ_SEED`` and ``LUDR_FUZZ_CASES`` (cases per file) change the seed and the size.
"""

from __future__ import annotations

import copy
import os
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from dicom_factory import StudyIds, ct_slices, write_series  # noqa: E402
from seg_factory import seg_dataset  # noqa: E402

from LuDoseResponseLib.errors import LuDoseResponseError  # noqa: E402
from LuDoseResponseLib.io import dicom  # noqa: E402
from LuDoseResponseLib.io.rtstruct import read_rtstruct  # noqa: E402
from LuDoseResponseLib.io.rtstruct_reference import ImageReference, check_on_reference, find_reference  # noqa: E402
from LuDoseResponseLib.io.rtstruct_write import write_rtstruct  # noqa: E402
from LuDoseResponseLib.response.volumetry import read_segmentation, segment_names  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom notes on each odd value

SEED = int(os.environ.get("LUDR_FUZZ_SEED", "20261213"))
CASES = int(os.environ.get("LUDR_FUZZ_CASES", "150"))
_TEXT = [b"", b" ", b"abc", b"-1", b"0", b"1e308", b"-1e308", b"nan", b"inf", b"\xff\xfe\x00", b"99999999999",
         b"1\\2\\3", b"0\\0\\0\\0\\0\\0", b"1.5", b"2147483648"]
_VRS = ["DS", "IS", "US", "UL", "FD", "CS", "UI", "OB", "SQ", "LO"]


def _elements(ds: Dataset, out: list[tuple[Dataset, int]]) -> list[tuple[Dataset, int]]:
    for element in ds:
        out.append((ds, element.tag))
        if element.VR == "SQ":
            for item in element.value:
                _elements(item, out)
    return out


def _raw(rng: random.Random, vr: str) -> bytes:
    if vr in ("US", "SS", "UL", "SL", "FL", "FD"):
        fmt = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}[vr]
        value = rng.choice([0, 1, 2, 3, 65535, 32768, -1, 2 ** 31 - 1, float("nan"), 1e300])
        try:
            return struct.pack(fmt, value) * rng.choice([1, 2, 3])
        except struct.error:
            return struct.pack(fmt, 0)
    if vr in ("OB", "OW", "UN"):
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64])))
    return rng.choice(_TEXT)


def _mutate(ds: Dataset, rng: random.Random) -> str:
    container, tag = rng.choice(_elements(ds, []))
    element = container[tag]
    kind = rng.choice(["delete", "value", "value", "vr", "sequence"])
    if kind == "sequence" and element.VR == "SQ" and len(element.value):
        if rng.random() < 0.5:
            element.value.clear()
            return f"emptied {element.keyword}"
        element.value.append(copy.deepcopy(element.value[0]))
        return f"duplicated an item of {element.keyword}"
    if kind == "delete" or (kind == "sequence"):
        del container[tag]
        return f"deleted {element.keyword or tag}"
    vr = element.VR if kind == "value" and element.VR != "SQ" else rng.choice(_VRS)
    raw = _raw(rng, vr) if vr != "SQ" else b"\x00" * 8
    raw += b"\0" * (len(raw) % 2)
    container[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    return f"{element.keyword or tag} as {vr} {raw[:12]!r}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("segfuzz")
    z, y, x = np.mgrid[0:6, 0:10, 0:12]
    truth = {"T1": ((x - 5) ** 2 + (y - 4) ** 2 + (z - 3) ** 2 <= 8).astype(np.uint8),
             "T2": ((x >= 8) & (y >= 6) & (z <= 3)).astype(np.uint8)}
    seg_dataset(truth, seed=1).save_as(root / "binary.dcm", enforce_file_format=True)
    seg_dataset({k: v * 0.8 for k, v in truth.items()}, fractional=True, seed=2).save_as(
        root / "fractional.dcm", enforce_file_format=True)
    write_series(ct_slices(np.zeros((6, 10, 12)), StudyIds()), root / "ct")
    ct = dicom.read_volume(root / "ct")
    masks = {}
    for name, array in truth.items():
        masks[name] = sitk.GetImageFromArray(array)
        masks[name].CopyInformation(ct.image)
    write_rtstruct(masks, root / "rs.dcm", source=ct.metadata)
    return root


def _run(path: Path, ct: Path | None) -> None:
    names = segment_names(path)
    if ct is not None:
        reference, _ = find_reference(read_rtstruct(path), [("ct", ImageReference(ct))])
        check_on_reference(read_rtstruct(path), reference)
        seg = read_segmentation(path, reference=reference)
    else:
        seg = read_segmentation(path)
    volumes = seg.volumes_ml()
    assert set(volumes) == set(names or volumes)
    assert all(np.isfinite(v) and v >= 0 for v in volumes.values())


@pytest.mark.parametrize("name", ["binary.dcm", "fractional.dcm", "rs.dcm"])
def test_malformed_files_give_named_errors(sources, tmp_path, name):
    rng = random.Random(f"{SEED}-{name}")
    original = sources / name
    ct = sources / "ct" if name == "rs.dcm" else None
    _run(original, ct)                     # the unmutated file reads
    data = original.read_bytes()
    failures, errors = [], 0
    for case in range(CASES):
        target = tmp_path / f"case{case}.dcm"
        choice = rng.random()
        if choice < 0.15:
            cut = rng.randrange(132, len(data))
            target.write_bytes(data[:cut])
            what = f"cut at {cut} of {len(data)} bytes"
        elif choice < 0.3:
            buf = bytearray(data)
            for _ in range(rng.choice([1, 4, 16])):
                buf[rng.randrange(132, len(buf))] = rng.randrange(256)
            target.write_bytes(bytes(buf))
            what = "flipped bytes"
        else:
            ds = pydicom.dcmread(original)
            what = _mutate(ds, rng)
            try:
                ds.save_as(target, enforce_file_format=False)
            except Exception:  # noqa: BLE001 - pydicom cannot write this mutation: nothing to read
                continue
        try:
            _run(target, ct)
        except LuDoseResponseError as exc:
            errors += 1
            if str(target) not in str(exc):
                failures.append(f"case {case} ({what}): the error does not name the file: {exc}")
        except Exception as exc:  # noqa: BLE001 - the oracle: anything else is a failure
            failures.append(f"case {case} ({what}): {type(exc).__name__}: {exc}")
    assert not failures, f"{len(failures)} of {CASES} cases:\n" + "\n".join(failures[:25])
    assert errors > CASES // 10          # the mutations did reach the reader
