"""Tumour volumes over follow-up CT segmentations, and volumetric response (Warfvinge et al. 2024, Eq. 1).

Segmentations are label images with a name per label, or 3D Slicer ``.seg.nrrd`` files (a NRRD
whose header holds ``Segment<N>_Name``, ``Segment<N>_LabelValue``, ``Segment<N>_Layer``; one
layer is a 3-D label image, several overlapping layers are stored as a 4-D array whose first
axis lists the layers, which SimpleITK reads as a vector image). Every volume is counted on its
own segmentation's grid: voxel count × voxel volume (mL = cm³). Tumours are joined by name.

Response (the paper, Methods): v_max is the largest volume over the follow-ups and v_min the
smallest volume at or after v_max; Δv = (v_max − v_min)/v_max. v_min is taken at or after v_max
because Δv measures shrinkage from the largest volume: a smaller volume *before* the maximum is
growth, not response, and would turn a progressing tumour into an apparent responder. Responder:
Δv ≥ 0.66, from RECIST 1.1's 30 % decrease in diameter, which for a sphere is a volume decrease of
1 − 0.7³ = 65.7 %.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from LuDoseResponseLib import defaults
from LuDoseResponseLib.errors import GeometryError, InputError
from LuDoseResponseLib.imaging import image_like, read_image_header, same_grid, voxel_volume_ml
from LuDoseResponseLib.io.rtstruct import RTSTRUCT_SOP_CLASS, read_rtstruct
from LuDoseResponseLib.io.rtstruct_reference import ImageReference, rtstruct_masks
from LuDoseResponseLib.io.seg import SEG_SOP_CLASS, read_seg, read_seg_labels

log = logging.getLogger(__name__)

RESPONDER_THRESHOLD = defaults.RESPONDER_THRESHOLD
RECIST_VOLUME_EQUIVALENT = 1.0 - 0.7 ** 3          # 0.657: 30 % in diameter, for a sphere
MIN_BASELINE_VOLUME_CM3 = defaults.MIN_BASELINE_VOLUME_CM3
BASELINE_VOLUME_CUTOFF_CM3 = defaults.BASELINE_VOLUME_CUTOFF_CM3
_SEGMENT_KEY = re.compile(r"^Segment(\d+)_Name$")


# --------------------------------------------------------------------------------------------
# Segmentations
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SegmentInfo:
    """One named segment: its layer (component) and label value in the label image."""

    name: str
    layer: int
    label_value: int


@dataclass(frozen=True, eq=False)   # holds arrays/images: compare by identity
class Segmentation:
    """A label image (3-D; a vector image for several layers) with named segments."""

    image: sitk.Image
    segments: tuple[SegmentInfo, ...]
    source: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    @property
    def n_layers(self) -> int:
        return int(self.image.GetNumberOfComponentsPerPixel())

    def segment(self, name: str) -> SegmentInfo:
        for s in self.segments:
            if s.name == name:
                return s
        raise InputError(f"{self.source or 'segmentation'}: no segment named {name!r}; it has "
                         f"{', '.join(self.names) or 'no segments'}")

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask [z, y, x] of one segment on this segmentation's grid."""
        info = self.segment(name)
        arr = sitk.GetArrayViewFromImage(self.image)
        layer = arr if self.n_layers == 1 else arr[..., info.layer]
        return layer == info.label_value

    def mask_on(self, name: str, reference: sitk.Image) -> np.ndarray:
        """Boolean mask [z, y, x] of one segment on ``reference``'s grid (nearest-neighbour resampling when
        the grids differ; outside this segmentation's grid is outside the segment)."""
        mask = image_like(self.mask(name).astype(np.uint8), self.image)
        if not same_grid(mask, reference):
            mask = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return sitk.GetArrayFromImage(mask) > 0

    def voxel_counts(self) -> dict[str, int]:
        arr = sitk.GetArrayViewFromImage(self.image)
        out = {}
        for s in self.segments:
            layer = arr if self.n_layers == 1 else arr[..., s.layer]
            out[s.name] = int(np.count_nonzero(layer == s.label_value))
        return out

    def volumes_ml(self) -> dict[str, float]:
        """Volume of each segment (mL = cm³) on this segmentation's own grid."""
        v = voxel_volume_ml(self.image)
        return {name: n * v for name, n in self.voxel_counts().items()}

    def to_dict(self) -> dict:
        return {"source": self.source, "size": list(self.image.GetSize()),
                "spacing_mm": [float(x) for x in self.image.GetSpacing()], "n_layers": self.n_layers,
                "segments": [{"name": s.name, "layer": s.layer, "label_value": s.label_value}
                             for s in self.segments]}


def _integer_label_image(image: sitk.Image, source: str) -> sitk.Image:
    if image.GetDimension() == 4:
        image = _layers_from_4d(image, source)
    if image.GetDimension() != 3:
        raise GeometryError(f"{source}: a segmentation must be 3-D (or 4-D with layers), got "
                            f"{image.GetDimension()}-D")
    arr = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{source}: label values must be whole numbers; is this a label image?")
        fixed = sitk.GetImageFromArray(np.asarray(arr).astype(np.int32),
                                       isVector=image.GetNumberOfComponentsPerPixel() > 1)
        fixed.CopyInformation(image)
        image = fixed
    return image


def _layers_from_4d(image: sitk.Image, source: str) -> sitk.Image:
    """A 4-D scalar image whose 4th axis lists layers → a 3-D vector image (one component per layer)."""
    size = list(image.GetSize())
    layers = []
    for k in range(size[3]):
        layers.append(sitk.Extract(image, [*size[:3], 0], [0, 0, 0, k]))
    out = sitk.Compose(layers)
    log.info("%s: read a 4-D segmentation as %d layers", source, size[3])
    return out


def segmentation_from_labelmap(image: sitk.Image, label_names: Mapping[int, str] | None = None, *,
                               source: str = "label image") -> Segmentation:
    """Named segments from a 3-D label image: ``label_names`` maps label value → tumour name.

    Without ``label_names`` each non-zero label is named by its value ("1", "2", ...).
    Listed labels absent from the image are kept as empty segments (volume 0).
    """
    image = _integer_label_image(image, source)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError(f"{source}: a label image must have one component; use read_segmentation for "
                            "multi-layer .seg.nrrd files")
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0)
    if label_names is None:
        label_names = {v: str(v) for v in present}
    segments = []
    for value, name in label_names.items():
        if int(value) == 0:
            raise InputError(f"{source}: label 0 is the background and cannot name a tumour ({name!r})")
        segments.append(SegmentInfo(str(name), 0, int(value)))
    _check_unique(segments, source)
    unnamed = sorted(set(present) - {s.label_value for s in segments})
    if unnamed:
        log.info("%s: labels %s have no name and are ignored", source, unnamed)
    return Segmentation(image, tuple(segments), source)


def _check_unique(segments: Sequence[SegmentInfo], source: str) -> None:
    seen: set[str] = set()
    for s in segments:
        if s.name in seen:
            raise InputError(f"{source}: two segments are named {s.name!r}; tumour names must be unique")
        seen.add(s.name)


def _seg_nrrd_segments(image: sitk.Image, source: str) -> list[SegmentInfo]:
    keys = image.GetMetaDataKeys()
    indices = sorted(int(m.group(1)) for k in keys if (m := _SEGMENT_KEY.match(k)))
    if not indices:
        raise InputError(f"{source}: no Segment<N>_Name keys in the header; this is not a Slicer .seg.nrrd. "
                         "Read it as a label image with label names instead")
    n_layers = image.GetNumberOfComponentsPerPixel() if image.GetDimension() == 3 else image.GetSize()[3]
    segments = []
    for i in indices:
        name = image.GetMetaData(f"Segment{i}_Name").strip()

        def meta_int(key: str, default: int | None, i=i, name=name) -> int:
            full = f"Segment{i}_{key}"
            if not image.HasMetaDataKey(full):
                if default is None:
                    raise InputError(f"{source}: segment {name!r} has no {full} in the header")
                return default
            try:
                return int(image.GetMetaData(full).strip())
            except ValueError as exc:
                raise InputError(f"{source}: {full} = {image.GetMetaData(full)!r} is not an integer") from exc

        # Files from Slicer before 4.11 have no LabelValue/Layer: one segment per layer, value 1 (a single
        # segment is then a single layer). Several segments in one layer need their LabelValue.
        layer = meta_int("Layer", i if n_layers > 1 else 0)
        label = meta_int("LabelValue", 1 if n_layers > 1 or len(indices) == 1 else None)
        if not 0 <= layer < n_layers:
            raise InputError(f"{source}: segment {name!r} is on layer {layer} but the file has {n_layers} layer(s)")
        segments.append(SegmentInfo(name, layer, label))
    _check_unique(segments, source)
    return segments


def _dicom_sop_class(path: Path) -> str | None:
    """The SOPClassUID of a DICOM Part-10 file (header only), or None when the file is not DICOM."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the segmentation ({exc})") from None
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return str(ds.get("SOPClassUID", ""))
    except Exception as exc:  # noqa: BLE001 - any unreadable header is a bad input file, named
        raise InputError(f"{path}: cannot read the DICOM header ({type(exc).__name__}: {exc})") from None


def _dicom_segmentation_kind(path: Path) -> str | None:
    """"seg" for a DICOM SEG, "rtstruct" for an RT Structure Set; None for a non-DICOM file; InputError for
    other DICOM objects."""
    sop = _dicom_sop_class(path)
    if sop is None:
        return None
    if sop == SEG_SOP_CLASS:
        return "seg"
    if sop == RTSTRUCT_SOP_CLASS:
        return "rtstruct"
    raise InputError(f"{path}: a DICOM file that is not a Segmentation or RT Structure Set (SOP Class {sop}); give "
                     "a DICOM SEG, an RTSTRUCT, a Slicer .seg.nrrd or a label image")


def segmentation_file_kind(path: str | Path) -> str | None:
    """"seg" (DICOM SEG), "rtstruct" (RT Structure Set) or None (an image file) from the file's header."""
    return _dicom_segmentation_kind(Path(path))


def segmentation_from_masks(masks: Mapping[str, sitk.Image], source: str) -> Segmentation:
    """Named binary masks on one grid as a Segmentation: one label image (values 1, 2, ...) when no voxel is in
    two masks, else one layer per mask (value 1), as Slicer stores overlapping segments."""
    arrays = {name: sitk.GetArrayViewFromImage(m) != 0 for name, m in masks.items()}
    reference = next(iter(masks.values()))
    if sum(a.astype(np.uint16) for a in arrays.values()).max() <= 1 and len(arrays) < 65535:
        labels = np.zeros(reference.GetSize()[::-1], dtype=np.uint16)
        for value, a in enumerate(arrays.values(), start=1):
            labels[a] = value
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(reference)
        segments = tuple(SegmentInfo(name, 0, value) for value, name in enumerate(arrays, start=1))
        return Segmentation(image, segments, source)
    layers = [sitk.Cast(m != 0, sitk.sitkUInt8) for m in masks.values()]
    image = layers[0] if len(layers) == 1 else sitk.Compose(layers)
    return Segmentation(image, tuple(SegmentInfo(name, layer, 1) for layer, name in enumerate(masks)), source)


def _segmentation_from_dicom_seg(path: Path) -> Segmentation:
    """A DICOM SEG as a Segmentation, on the grid its frames define (``io/seg.py``)."""
    seg = read_seg(path)
    for w in seg.warnings:
        log.warning(w)
    return segmentation_from_masks({label: s.mask for label, s in seg.segments.items()}, str(path))


def segment_names(path: str | Path) -> tuple[str, ...] | None:
    """The segment names of a Slicer ``.seg.nrrd``, a DICOM SEG (segment labels) or an RTSTRUCT (its anatomy
    ROIs: :attr:`io.rtstruct.StructureSet.volume_names`) from the file alone (no voxels).

    None for a label image without names (its tumours are named by their label values, which only the
    voxels tell). Raises InputError naming the file when it cannot be read.
    """
    p = Path(path)
    kind = _dicom_segmentation_kind(p) if p.is_file() else None
    if kind == "seg":
        return read_seg_labels(p)
    if kind == "rtstruct":
        return read_rtstruct(p).volume_names
    reader = read_image_header(p, "segmentation")
    keys = reader.GetMetaDataKeys()
    indices = sorted(int(m.group(1)) for k in keys if (m := _SEGMENT_KEY.match(k)))
    if not indices:
        if p.name.endswith(".seg.nrrd"):
            raise InputError(f"{p}: a .seg.nrrd without Segment<N>_Name keys; re-save it from Slicer")
        return None
    return tuple(reader.GetMetaData(f"Segment{i}_Name").strip() for i in indices)


def read_segmentation(path: str | Path, label_names: Mapping[int, str] | None = None, *,
                      reference: ImageReference | None = None) -> Segmentation:
    """Read a Slicer ``.seg.nrrd`` (names from its header), a DICOM SEG (names from its segment labels,
    on the grid its frames define: ``io/seg.py``), an RTSTRUCT (names from its ROIs, rasterised onto the grid
    of ``reference``, the image it was drawn on: ``io/rtstruct.py``, ``io/rtstruct_reference.py``) or a label
    image (NRRD, NIfTI, MetaImage).

    For a label image, ``label_names`` maps label value → tumour name (default: the value as text).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"segmentation file not found: {p}")
    kind = _dicom_segmentation_kind(p)
    if kind == "seg":
        return _segmentation_from_dicom_seg(p)
    if kind == "rtstruct":
        if reference is None:
            raise InputError(f"{p}: an RTSTRUCT holds contours, not voxels; give the image series it was drawn on "
                             "as its reference, so that it can be rasterised onto that grid")
        return segmentation_from_masks(rtstruct_masks(p, reference), str(p))
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"{p}: cannot read the segmentation ({str(exc).strip().splitlines()[-1]})") from exc
    is_seg = any(_SEGMENT_KEY.match(k) for k in image.GetMetaDataKeys())
    if not is_seg:
        if p.name.endswith(".seg.nrrd"):
            raise InputError(f"{p}: a .seg.nrrd without Segment<N>_Name keys; re-save it from Slicer")
        return segmentation_from_labelmap(image, label_names, source=str(p))
    if label_names is not None:
        log.info("%s: names come from the .seg.nrrd header; label_names ignored", p)
    segments = _seg_nrrd_segments(image, str(p))
    return Segmentation(_integer_label_image(image, str(p)), tuple(segments), str(p))


# --------------------------------------------------------------------------------------------
# Volumes over time
# --------------------------------------------------------------------------------------------

def _as_datetime(x, what: str) -> datetime:
    if isinstance(x, datetime):
        return x
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day)
    if isinstance(x, str):
        try:
            return datetime.fromisoformat(x)
        except ValueError as exc:
            raise InputError(f"{what}: {x!r} is not an ISO date (YYYY-MM-DD)") from exc
    raise InputError(f"{what}: expected a date, got {x!r}")


@dataclass(frozen=True)
class VolumeSeries:
    """One tumour's volumes (cm³) at its follow-up dates; the first is the baseline."""

    tumor: str
    dates: tuple[datetime, ...]
    volumes_cm3: tuple[float, ...]

    def __post_init__(self):
        what = f"tumour {self.tumor!r}"
        if len(self.dates) != len(self.volumes_cm3):
            raise InputError(f"{what}: {len(self.dates)} dates but {len(self.volumes_cm3)} volumes")
        if len(self.dates) == 0:
            raise InputError(f"{what}: no follow-up volumes")
        dts = tuple(_as_datetime(d, what) for d in self.dates)
        object.__setattr__(self, "dates", dts)
        if any(b <= a for a, b in zip(dts, dts[1:], strict=False)):
            raise InputError(f"{what}: follow-up dates must be strictly increasing, got "
                             f"{[d.date().isoformat() for d in dts]}")
        vols = tuple(float(v) for v in self.volumes_cm3)
        if not all(math.isfinite(v) and v >= 0 for v in vols):
            raise InputError(f"{what}: volumes must be finite and >= 0 cm3, got {list(vols)}")
        object.__setattr__(self, "volumes_cm3", vols)

    def to_dict(self) -> dict:
        return {"tumor": self.tumor, "dates": [d.isoformat() for d in self.dates],
                "volumes_cm3": list(self.volumes_cm3)}


def volumes_over_time(followups: Sequence[tuple[object, Segmentation | str | Path]], *,
                      tumours: Sequence[str] | None = None,
                      label_names: Mapping[int, str] | None = None) -> dict[str, VolumeSeries]:
    """Volumes of every tumour at every follow-up, joined by name; the first follow-up is the baseline.

    ``followups``: (date, segmentation or path) pairs. ``tumours``: the tumours to follow (default:
    the baseline's segments); each must be present, by name, in every scan, or an error lists the
    unmatched ones. A tumour that has disappeared must remain as an empty segment (volume 0).
    """
    if len(followups) == 0:
        raise InputError("volumetry: no follow-up segmentations given")
    scans: list[tuple[datetime, Segmentation]] = []
    for i, item in enumerate(followups):
        try:
            when, seg = item
        except (TypeError, ValueError) as exc:
            raise InputError(f"volumetry: follow-up {i} must be a (date, segmentation) pair") from exc
        if not isinstance(seg, Segmentation):
            seg = read_segmentation(seg, label_names)
        scans.append((_as_datetime(when, f"follow-up {i} ({seg.source})"), seg))
    wanted = list(tumours) if tumours is not None else list(scans[0][1].names)
    if not wanted:
        raise InputError(f"volumetry: the baseline segmentation {scans[0][1].source} has no segments")
    problems = []
    for when, seg in scans:
        missing = [n for n in wanted if n not in seg.names]
        if missing:
            problems.append(f"{seg.source or when.date().isoformat()} ({when.date().isoformat()}) lacks "
                            f"{', '.join(repr(n) for n in missing)}")
        extra = [n for n in seg.names if n not in wanted]
        if extra and tumours is None:
            problems.append(f"{seg.source or when.date().isoformat()} ({when.date().isoformat()}) has "
                            f"{', '.join(repr(n) for n in extra)}, not in the baseline")
    if problems:
        raise InputError("volumetry: tumours are matched by name across scans, and these do not match: "
                         + "; ".join(problems) + ". Rename the segments so that each tumour has one name "
                         "in every scan (keep a disappeared tumour as an empty segment)")
    volumes = [seg.volumes_ml() for _, seg in scans]
    dates = tuple(when for when, _ in scans)
    return {name: VolumeSeries(name, dates, tuple(v[name] for v in volumes)) for name in wanted}


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResponseMetrics:
    """Volumetric response of one tumour (Warfvinge et al. 2024, Eq. 1)."""

    tumor: str
    baseline_date: datetime
    baseline_volume_cm3: float
    vmax_cm3: float
    vmax_date: datetime
    vmin_cm3: float
    vmin_date: datetime
    dv: float
    responder: bool
    t_vmin_days: float                # days from the baseline CT to the v_min CT
    t_vmax_days: float
    best_response_before_last_cycle: bool | None   # None when no cycle dates were given
    below_min_baseline_volume: bool   # baseline < 4 cm³: excluded from the dose analyses
    baseline_volume_group: str        # "small" (≤ 30 cm³) or "large" (> 30 cm³)
    n_scans: int
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # the paper's complementary scoring: the smallest volume on the CTs at or after the last
    # administration (None without cycle dates or without such a CT)
    vmin_after_treatment_cm3: float | None = None
    dv_after_treatment: float | None = None

    def to_dict(self) -> dict:
        return {"tumor": self.tumor, "baseline_date": self.baseline_date.isoformat(),
                "baseline_volume_cm3": self.baseline_volume_cm3, "vmax_cm3": self.vmax_cm3,
                "vmax_date": self.vmax_date.isoformat(), "vmin_cm3": self.vmin_cm3,
                "vmin_date": self.vmin_date.isoformat(), "dv": self.dv, "responder": bool(self.responder),
                "t_vmin_days": self.t_vmin_days, "t_vmax_days": self.t_vmax_days,
                "best_response_before_last_cycle": self.best_response_before_last_cycle,
                "below_min_baseline_volume": self.below_min_baseline_volume,
                "baseline_volume_group": self.baseline_volume_group, "n_scans": self.n_scans,
                "vmin_after_treatment_cm3": self.vmin_after_treatment_cm3,
                "dv_after_treatment": self.dv_after_treatment, "warnings": list(self.warnings)}


def response_metrics(series: VolumeSeries, *, cycle_dates: Sequence | None = None,
                     responder_threshold: float = RESPONDER_THRESHOLD,
                     min_baseline_volume_cm3: float = MIN_BASELINE_VOLUME_CM3,
                     baseline_volume_cutoff_cm3: float = BASELINE_VOLUME_CUTOFF_CM3) -> ResponseMetrics:
    """v_max, v_min (at or after v_max), Δv, responder and flags for one tumour.

    Ties: v_max and v_min are taken at their earliest date (the best response is reached when the
    smallest volume is first seen). ``cycle_dates``: administration dates; the best response came
    before the last cycle when the v_min CT precedes the last administration. For the paper's
    complementary analysis ("the smallest tumor volume after treatment was then also scored"),
    ``dv_after_treatment`` = (v_max − v_min,after)/v_max with v_min,after the smallest volume on the
    CTs dated at or after the last administration (and at or after v_max).
    """
    what = f"tumour {series.tumor!r}"
    if not (0 < responder_threshold <= 1):
        raise InputError(f"{what}: responder threshold must be in (0, 1], got {responder_threshold!r}")
    v = np.array(series.volumes_cm3)
    i_max = int(np.argmax(v))                     # first occurrence
    vmax = float(v[i_max])
    if vmax <= 0:
        raise InputError(f"{what}: the volume is 0 in every follow-up; check the segment names and masks")
    i_min = i_max + int(np.argmin(v[i_max:]))     # first occurrence at or after v_max
    vmin = float(v[i_min])
    dv = (vmax - vmin) / vmax
    base = series.dates[0]
    warnings = []
    if i_max > 0 and float(np.min(v[:i_max])) < v[0]:
        warnings.append(f"{what}: the volume decreased and then grew above its earlier values; v_max is the "
                        f"later maximum ({series.dates[i_max].date().isoformat()}), and Δv is measured from it")
    before_last = None
    vmin_after, dv_after = None, None
    if cycle_dates is not None and len(cycle_dates) > 0:
        last = max(_as_datetime(d, what) for d in cycle_dates)
        before_last = series.dates[i_min] < last
        after = [k for k in range(i_max, v.size) if series.dates[k] >= last]
        if after:
            vmin_after = float(np.min(v[after]))
            dv_after = (vmax - vmin_after) / vmax
    v0 = float(v[0])
    return ResponseMetrics(
        tumor=series.tumor, baseline_date=base, baseline_volume_cm3=v0, vmax_cm3=vmax,
        vmax_date=series.dates[i_max], vmin_cm3=vmin, vmin_date=series.dates[i_min], dv=float(dv),
        responder=bool(dv >= responder_threshold),
        t_vmin_days=(series.dates[i_min] - base).total_seconds() / 86400.0,
        t_vmax_days=(series.dates[i_max] - base).total_seconds() / 86400.0,
        best_response_before_last_cycle=before_last,
        below_min_baseline_volume=bool(v0 < min_baseline_volume_cm3),
        baseline_volume_group="large" if v0 > baseline_volume_cutoff_cm3 else "small",
        n_scans=int(v.size), warnings=tuple(warnings), vmin_after_treatment_cm3=vmin_after,
        dv_after_treatment=None if dv_after is None else float(dv_after))
