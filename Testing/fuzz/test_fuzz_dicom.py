"""Seeded, bounded fuzzing of the DICOM reader (issue 9) on the vendor-like layouts of ``dicom_factory``.

Each case copies one unmutated series, applies one mutation (an attribute deleted, altered to an
extreme number or text, written with a wrong VR, Rows/Columns/NumberOfFrames off by one,
PixelData truncated or extended, an encapsulated fragment dropped or cut, the file cut or its
header bytes flipped, files shuffled, renamed, duplicated or removed), writes it and runs
``inspect`` and ``read_volume`` on it. The oracle:

1. the outcome is a success or the project's own error (a LuDoseResponseError naming the file or
   folder); any other exception is a failure;
2. never a silent wrong value: where the mutation cannot change the image (a description deleted,
   files shuffled or renamed, an unrelated file added), the read must succeed and equal the
   unmutated truth (voxels exactly, geometry, times, activity, units); where it changes how the
   pixel data are laid out (Rows, Columns, NumberOfFrames, the PixelData bytes, fragments, a cut
   file), a success must equal the truth exactly: anything else is a padded or cropped volume;
   a removed end slice must give the truth without that slice; every successful read is finite;
3. bounded memory: each layout's cases run with the address space capped at its size before the
   loop + ``ADDRESS_SPACE_HEADROOM_BYTES`` (RLIMIT_AS, Linux), so any allocation of GiBs fails as a
   MemoryError (a failure); and every ``TRACEMALLOC_EVERY``-th case runs under tracemalloc, whose
   peak must stay below ``PEAK_LIMIT_BYTES`` (the files are a few kB; a header that made the
   reader allocate by its numbers, or a corrupt element length read as such, exceeds it).

The truth itself is checked against an independent computation before any case runs: plain
pydicom arithmetic (stored values × the file's slope + intercept, or its real-world value
mapping), or GDCM (SimpleITK's series reader) for the JPEG Lossless layout that pydicom cannot
decode here.

``LUDR_FUZZ_SEED`` and ``LUDR_FUZZ_CASES`` (cases per layout) change the seed and the size.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import resource
import shutil
import struct
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate, generate_frames
from pydicom.tag import Tag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from dicom_factory import (  # noqa: E402 - Testing/data holds the generators, not a package
    ct_slices,
    gdcm_jpeg_lossless,
    ge_counts_like,
    hermes_pt_like,
    philips_like,
    rle_compressed,
    save,
    set_with_vr,
    siemens_xspect_like,
    write_series,
)

from LuDoseResponseLib.errors import LuDoseResponseError  # noqa: E402
from LuDoseResponseLib.io import dicom  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom notes on each odd value

SEED = int(os.environ.get("LUDR_FUZZ_SEED", "20261202"))
CASES_PER_LAYOUT = int(os.environ.get("LUDR_FUZZ_CASES", "430"))  # × 7 layouts ≈ 3000 cases
PEAK_LIMIT_BYTES = 32 * 2**20
ADDRESS_SPACE_HEADROOM_BYTES = 2 * 2**30
TRACEMALLOC_EVERY = 5
NF, NR, NC = 5, 6, 7

#: attributes that decide how the pixel data are laid out: a success must equal the truth exactly
LAYOUT_KEYWORDS = ("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "SamplesPerPixel")
#: attributes that change values or geometry legitimately when altered (a success must be finite)
MEANINGFUL_KEYWORDS = (
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation", "PixelSpacing",
    "SpacingBetweenSlices", "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient", "NumberOfSlices",
    "ImageType", "RescaleSlope", "RescaleIntercept", "Units", "Modality", "SeriesInstanceUID", "SOPClassUID",
    "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "RealWorldValueMappingSequence",
    "DetectorInformationSequence", "RadiopharmaceuticalInformationSequence", "RotationInformationSequence",
    "ActualFrameDuration", "NumberOfFramesInRotation", "DecayCorrection", "FrameOfReferenceUID", "SliceVector",
)
#: attributes the image cannot depend on, with the metadata field they fill (None: not reported)
IRRELEVANT_KEYWORDS = {
    "StudyDescription": "study_description", "SeriesDescription": "series_description",
    "Manufacturer": "manufacturer", "AccessionNumber": "accession_number", "PatientName": "patient_name",
    "ReferringPhysicianName": None, "StudyID": "study_id", "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex", "InstanceNumber": None, "KVP": None, "CorrectedImage": None,
    "PositionReferenceIndicator": None, "SpecificCharacterSet": None,
}
#: metadata fields compared with the truth when the mutation cannot matter
COMPARED_FIELDS = ("modality", "patient_id", "series_uid", "acquired_at", "duration_s", "administered_at",
                   "activity_mbq", "half_life_h", "units", "size", "spacing_mm", "origin_mm", "direction",
                   "decay_correction", "frame_of_reference_uid", "study_uid")
NUMBER_TEXTS = ("0", "-1", "-4", "1", "2", "65535", "65536", "2147483647", "-2147483648", "1e37", "-1e37",
                "1e-300", "nan", "inf", "-inf", "abc", "1\\2", " 7 ", "0x10", "1e308", "3.5")
WRONG_VRS = {"DS": "-1e37", "IS": "64", "FL": -1e37, "UL": 2**32 - 1, "SS": -4, "LO": "abc", "OB": b"\x01\x02",
             "US": 65535, "SL": -2**31, "FD": math.inf}


@dataclass
class Series:
    """One unmutated layout: its datasets, how they are written, and the truth read from them."""

    name: str
    datasets: list[pydicom.Dataset]
    single_file: bool
    values: np.ndarray | None = None
    geometry: tuple | None = None
    metadata: dict | None = None
    slice_of_dataset: list[int] | None = None  # stacks: the k of each dataset in the truth volume


@dataclass
class Case:
    operator: str
    detail: str
    oracle: str                       # "truth" (must succeed, equal), "exact-if-ok", "drop-slice", "any"
    dropped: int | None = None        # the k of a removed slice (for "drop-slice")


def _layouts() -> dict[str, Callable[[], Series]]:
    rng = np.random.default_rng(SEED)
    conc = rng.uniform(1e3, 2e5, size=(NF, NR, NC))
    counts = rng.integers(0, 3000, size=(NF, NR, NC)).astype(np.uint16)
    hu = rng.integers(-1000, 2000, size=(NF, NR, NC)).astype(float)
    return {
        "siemens": lambda: Series("siemens", [siemens_xspect_like(conc)], True),
        "ge": lambda: Series("ge", [ge_counts_like(counts)], True),
        "philips": lambda: Series("philips", [philips_like(counts)], True),
        "siemens-rle": lambda: Series("siemens-rle", [rle_compressed(siemens_xspect_like(conc))], True),
        "hermes-pt": lambda: Series("hermes-pt", hermes_pt_like(conc), False),
        "ct": lambda: Series("ct", ct_slices(hu[:4]), False),
        "ct-jpeg": lambda: Series("ct-jpeg", _jpeg_lossless(ct_slices(hu[:3])), False),
    }


def _jpeg_lossless(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The slices recompressed as JPEG Lossless by GDCM (decoded by GDCM in the reader: its own path)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        plain = write_series(datasets, Path(tmp) / "plain")
        return [pydicom.dcmread(gdcm_jpeg_lossless(f, Path(tmp) / "jpeg" / f.name)) for f in plain]


def _independent_values(series: Series, folder: Path) -> np.ndarray:
    """Output values by plain pydicom arithmetic from each file's own tags, or by GDCM where pydicom has no
    decoder (sorted, to compare as multisets)."""
    if series.name == "ct-jpeg":
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return np.sort(sitk.GetArrayFromImage(reader.Execute()).astype(float).ravel())
    out = []
    for ds in series.datasets:
        stored = ds.pixel_array.astype(float)
        rwvm = ds.get("RealWorldValueMappingSequence")
        if rwvm:
            out.append(stored * float(rwvm[0].RealWorldValueSlope) + float(rwvm[0].RealWorldValueIntercept))
        else:
            out.append(stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0)))
    return np.sort(np.concatenate([v.ravel() for v in out]))


def _write(series: Series, folder: Path, datasets: list[pydicom.Dataset], seed: int) -> tuple[Path, list[Path]]:
    """(what to read, the files in dataset order)."""
    if series.single_file:
        file = save(datasets[0], folder / "image.dcm")
        return file, [file]
    return folder, write_series(datasets, folder, seed=seed)


def _read(target: Path) -> tuple[np.ndarray, tuple, dict]:
    volume = dicom.read_volume(target)
    image = volume.image
    geometry = (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return sitk.GetArrayFromImage(image), geometry, volume.to_dict()


# ------------------------------------------------------------------------------------- mutations


def _set_raw_bytes(ds: pydicom.Dataset, keyword: str, vr: str, raw: bytes) -> None:
    tag = Tag(keyword)
    raw += b"\0" * (len(raw) % 2)
    ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)


def _alter(ds: pydicom.Dataset, keyword: str, rng: random.Random) -> str:
    """Replace ``keyword`` by an extreme or malformed value of its own VR, undecoded (as a broken file holds it)."""
    vr = pydicom.datadict.dictionary_VR(keyword)
    if vr in ("US", "SS", "UL", "SL", "FL", "FD"):
        choice = rng.choice([0, 1, 65535, 32768, 2, 3, 12, 65534, -1])
        fmt = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}[vr]
        size = rng.choice([struct.calcsize(fmt), struct.calcsize(fmt), 0, 4, 1])
        try:
            raw = struct.pack(fmt, choice)
        except struct.error:
            raw = b"\xff" * struct.calcsize(fmt)
        raw = (raw * 4)[:size]
        _set_raw_bytes(ds, keyword, vr, raw)
        return f"{keyword} {vr} bytes {raw.hex()}"
    if vr == "SQ":
        ds[keyword].value = []
        return f"{keyword} emptied"
    text = rng.choice(NUMBER_TEXTS)
    _set_raw_bytes(ds, keyword, vr, text.encode("ascii"))
    return f"{keyword} = {text!r}"


def _target_dataset(datasets: list[pydicom.Dataset], keyword: str, rng: random.Random) -> pydicom.Dataset:
    """The data set holding ``keyword``: the top level, or the detector item that holds the NM geometry."""
    ds = rng.choice(datasets)
    if keyword not in ds and "DetectorInformationSequence" in ds and keyword in ds.DetectorInformationSequence[0]:
        return ds.DetectorInformationSequence[0]
    return ds


def _mutate_header(datasets: list[pydicom.Dataset], rng: random.Random, series: Series) -> Case:
    group = rng.choices(["layout", "meaningful", "irrelevant"], weights=[4, 4, 2])[0]
    if group == "irrelevant":
        keyword = rng.choice(sorted(IRRELEVANT_KEYWORDS))
        how = rng.choice(["delete", "alter"])
        for ds in datasets:  # every file, so that no file disagrees with another
            if how == "delete" and keyword in ds:
                del ds[keyword]
            elif how == "alter":
                _set_raw_bytes(ds, keyword, pydicom.datadict.dictionary_VR(keyword), b"ZZ^fuzzed")
        return Case(f"irrelevant-{how}", keyword, "truth")
    keyword = rng.choice(LAYOUT_KEYWORDS if group == "layout" else MEANINGFUL_KEYWORDS)
    oracle = "exact-if-ok" if group == "layout" else "any"
    how = rng.choice(["delete", "alter", "wrong-vr", "off-by-one"] if group == "layout" else
                     ["delete", "alter", "wrong-vr"])
    targets = datasets if rng.random() < 0.5 else [rng.choice(datasets)]
    detail = keyword
    for ds in targets:
        holder = _target_dataset([ds], keyword, rng)
        if how == "delete":
            if keyword in holder:
                if keyword in ("BitsAllocated",) and "PixelData" in ds:
                    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"  # so pydicom can still write it
                del holder[keyword]
        elif how == "alter":
            detail = _alter(holder, keyword, rng)
        elif how == "wrong-vr":
            vr = rng.choice(sorted(WRONG_VRS))
            set_with_vr(holder, keyword, vr, WRONG_VRS[vr])
            detail = f"{keyword} as {vr}"
        else:
            current = int(holder.get(keyword, 1))
            step = rng.choice([-1, 1])
            setattr(holder, keyword, max(current + step, 0))
            if keyword == "NumberOfFrames" and "NumberOfSlices" in holder:
                holder.NumberOfSlices = holder.NumberOfFrames  # keep the cross-check quiet: only the data disagree
            detail = f"{keyword} {current} -> {current + step}"
    return Case(f"{group}-{how}", detail, oracle)


def _mutate_pixels(datasets: list[pydicom.Dataset], rng: random.Random, series: Series) -> Case:
    ds = rng.choice(datasets)
    data = bytes(ds.PixelData)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_encapsulated:
        frames = list(generate_frames(data, number_of_frames=int(ds.get("NumberOfFrames", 1))))
        how = rng.choice(["drop", "duplicate", "cut", "garbage", "empty"])
        k = rng.randrange(len(frames))
        if how == "drop":
            del frames[k]
        elif how == "duplicate":
            frames.insert(k, frames[k])
        elif how == "cut":  # by an even number of bytes: an odd fragment is padded, i.e. its last byte changed
            frames[k] = frames[k][:2 * rng.randrange(0, len(frames[k]) // 2)]
        elif how == "garbage":
            frames[k] = bytes(rng.randrange(256) for _ in range(len(frames[k])))
        ds.PixelData = encapsulate(frames) if how != "empty" else encapsulate([b"\0\0"])
        return Case(f"fragment-{how}", f"frame {k}", "exact-if-ok" if how != "garbage" else "any")
    frame = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    how = rng.choice(["cut", "extend"])
    # even cuts only: pydicom pads an odd PixelData with a zero byte, which would just change the last voxel
    n = rng.choice([2, int(ds.Columns) * 2, frame, frame // 2 + frame // 2 % 2, len(data) - 2])
    if how == "extend":
        n = rng.choice([1, n])
    ds.PixelData = data[:-n] if how == "cut" else data + bytes(rng.randrange(256) for _ in range(n))
    return Case(f"pixeldata-{how}", f"{n} bytes", "exact-if-ok")


def _mutate_series(files: list[Path], rng: random.Random, series: Series, folder: Path) -> Case:
    """File-level mutations after writing (stacks only)."""
    how = rng.choice(["shuffle", "rename", "add-unrelated", "duplicate", "remove"])
    if how == "shuffle":
        names = [f.name for f in files]
        rng.shuffle(names)
        for f, n in zip(files, names, strict=True):
            f.rename(f.with_name(n + ".tmp"))
        for f in folder.iterdir():
            f.rename(f.with_name(f.name.removesuffix(".tmp")))
        return Case("series-shuffle", "file names permuted", "truth")
    if how == "rename":
        for f in files:
            f.rename(f.with_name(f.name + ".dcm"))
        return Case("series-rename", "+.dcm", "truth")
    if how == "add-unrelated":
        (folder / "notes.txt").write_text("not DICOM")
        (folder / "garbage").write_bytes(b"\x08\x00" + bytes(rng.randrange(256) for _ in range(300)))
        return Case("series-add-unrelated", "text and garbage", "truth")
    k = rng.randrange(len(files))
    if how == "duplicate":
        shutil.copy(files[k], folder / "copy_of_one")
        return Case("series-duplicate", f"file {k}", "exact-if-ok")
    files[k].unlink()
    return Case("series-remove", f"slice {k}", "drop-slice", dropped=k)


def _mutate_file_bytes(target: Path, files: list[Path], rng: random.Random) -> Case:
    """Cut the file, or flip bytes of its header (before PixelData)."""
    file = rng.choice(files)
    raw = bytearray(file.read_bytes())
    pixel_at = raw.rfind(b"\xe0\x7f\x10\x00")
    if rng.random() < 0.5:
        cut = rng.randrange(1, len(raw))
        file.write_bytes(bytes(raw[:cut]))
        # a slice file cut so short that it is no DICOM image any more leaves a series without it
        dropped = None if target.is_file() else files.index(file)
        # cut inside the 128-byte preamble, the file is no longer recognisable as DICOM at all
        name = "file-cut-preamble" if cut < 132 else "file-cut"
        return Case(name, f"{file.name} at {cut} of {len(raw)}", "exact-if-ok", dropped)
    for _ in range(rng.choice([1, 2, 8])):
        i = rng.randrange(132, max(pixel_at, 133))
        raw[i] = rng.randrange(256)
    file.write_bytes(bytes(raw))
    return Case("file-flip", f"{file.name} header bytes", "any")


# ---------------------------------------------------------------------------------------- oracle


def _check(series: Series, case: Case, result: tuple | None) -> str | None:
    """Why this outcome breaks the oracle, or None."""
    if result is None:
        return "must succeed and equal the unmutated truth, but raised" if case.oracle == "truth" else None
    values, geometry, meta = result
    if not np.isfinite(values).all():
        return "succeeded with non-finite voxels"
    same = values.shape == series.values.shape and np.array_equal(values, series.values)
    if case.oracle == "exact-if-ok" and case.dropped is not None and not same:
        case = Case(case.operator, case.detail, "drop-slice", case.dropped)
    if case.oracle in ("truth", "exact-if-ok"):
        if not same or geometry != series.geometry:
            return "succeeded with voxels or geometry that differ from the unmutated truth"
        if case.oracle == "truth":
            changed = [k for k in COMPARED_FIELDS if meta[k] != series.metadata[k]]
            if changed:
                return f"metadata differ from the truth: {changed}"
    if case.oracle == "drop-slice":
        # a series without one of its files may be complete-looking (an end slice, or the middle one of
        # three: twice the spacing); it must then be exactly the truth without that slice
        expected = np.delete(series.values, series.slice_of_dataset[case.dropped], axis=0)
        if not np.array_equal(values, expected):
            return f"succeeded without slice {case.dropped} but not as the truth without it"
        if case.operator == "file-cut" and not any(case.detail.split()[0] in w for w in meta["warnings"]):
            return "a cut file was left out of the series without a warning naming it"
    return None


def _run_case(series: Series, case_index: int, root: Path, rng: random.Random,
              measure: bool) -> tuple[str, Case, str | None]:
    folder = root / f"case{case_index}"
    datasets = copy.deepcopy(series.datasets)
    kind = rng.choices(["header", "pixels", "series", "bytes"], weights=[6, 2, 0 if series.single_file else 1, 1])[0]
    try:
        if kind == "header":
            case = _mutate_header(datasets, rng, series)
        elif kind == "pixels":
            case = _mutate_pixels(datasets, rng, series)
        target, files = _write(series, folder, datasets, seed=case_index)
        if kind == "series":
            case = _mutate_series(files, rng, series, folder)
        elif kind == "bytes":
            case = _mutate_file_bytes(target, files, rng)
    except Exception as exc:  # noqa: BLE001 - pydicom refused to write the mutation: not a reader case
        shutil.rmtree(folder, ignore_errors=True)
        return "unwritable", Case(kind, f"{type(exc).__name__}", "any"), None
    problem = None
    if measure:
        tracemalloc.start()
    try:
        dicom.inspect(target)
    except LuDoseResponseError as exc:
        if target.name not in str(exc) and str(folder) not in str(exc):
            problem = f"inspect error does not name the file: {exc}"
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a failure
        problem = f"inspect raised {type(exc).__name__}: {exc}"
    result, outcome = None, "error"
    try:
        result = _read(target)
        outcome = "ok"
    except LuDoseResponseError:
        pass
    except Exception as exc:  # noqa: BLE001
        problem = problem or f"read_volume raised {type(exc).__name__}: {exc}"
        outcome = "crash"
    if measure:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if peak > PEAK_LIMIT_BYTES:
            problem = problem or f"tracemalloc peak {peak / 2**20:.1f} MiB > {PEAK_LIMIT_BYTES / 2**20:.0f} MiB"
    if problem is None and outcome != "crash":
        problem = _check(series, case, result)
    shutil.rmtree(folder, ignore_errors=True)
    return outcome, case, problem


@contextlib.contextmanager
def _address_space_capped(headroom: int):
    """RLIMIT_AS (soft) = the current address space + ``headroom`` while inside; restored after (Linux only)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        yield  # no /proc: tracemalloc alone bounds the memory
        return
    size_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size_kib * 1024 + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("layout", sorted(_layouts()))
def test_fuzzed_series_give_the_truth_or_our_error_in_bounded_memory(tmp_path, layout, capsys):
    series = _layouts()[layout]()
    truth_target, _ = _write(series, tmp_path / "truth", series.datasets, seed=0)
    series.values, series.geometry, series.metadata = _read(truth_target)
    np.testing.assert_array_equal(np.sort(series.values.ravel()), _independent_values(series, tmp_path / "truth"))
    # stacks: the factory places dataset d at origin + d·Δ·normal, so it is slice k = d of the truth
    series.slice_of_dataset = list(range(len(series.datasets)))
    rng = random.Random(f"{SEED}-{layout}")
    outcomes: Counter = Counter()
    by_operator: Counter = Counter()
    failures: list[str] = []
    with _address_space_capped(ADDRESS_SPACE_HEADROOM_BYTES):
        for i in range(CASES_PER_LAYOUT):
            outcome, case, problem = _run_case(series, i, tmp_path, rng, measure=i % TRACEMALLOC_EVERY == 0)
            outcomes[outcome] += 1
            by_operator[case.operator.split("-")[0], outcome] += 1
            if problem:
                failures.append(f"case {i} {case.operator} ({case.detail}): {problem}")
    with capsys.disabled():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        detail = ", ".join(f"{op}/{out} {v}" for (op, out), v in sorted(by_operator.items()))
        print(f"\nfuzz {layout}: {CASES_PER_LAYOUT} cases, {counts}, oracle failures {len(failures)} ({detail})")
    assert not failures, "\n".join(failures[:20])
    assert outcomes["unwritable"] < CASES_PER_LAYOUT // 5  # the suite exercises the reader, not pydicom's writer
    assert outcomes["ok"] > 0 and outcomes["error"] > 0
