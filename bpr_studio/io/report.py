"""Failure-inspection report files: the per-instance CSV and the PNGs of ``core.figures``' figures.

Every file is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from ..core.quality import InstanceQuality
from .atomic import atomic_write_bytes, atomic_write_text

CSV_COLUMNS = (
    "image_index", "instance_index", "image", "category_id", "category", "area", "gt_index",
    "iou_before", "iou_after", "iou_change", "bf_before", "bf_after", "bf_change",
    "uncertain_share", "changed_share", "n_patches",
)
"""Columns of the CSV, in order; unknown figures are empty cells."""


def quality_rows(records: Sequence[InstanceQuality], categories: dict[int, str] | None = None) -> list[dict]:
    """One dict per record with the keys of CSV_COLUMNS (None for unknown figures)."""
    categories = categories or {}
    rows = []
    for q in records:
        rows.append({
            "image_index": q.image_index, "instance_index": q.instance_index, "image": q.image_name,
            "category_id": q.category_id, "category": categories.get(q.category_id, ""),
            "area": q.area, "gt_index": q.gt_index,
            "iou_before": q.iou_before, "iou_after": q.iou_after, "iou_change": q.iou_change,
            "bf_before": q.bf_before, "bf_after": q.bf_after, "bf_change": q.bf_change,
            "uncertain_share": q.uncertain_share, "changed_share": q.changed_share,
            "n_patches": q.n_patches,
        })
    return rows


def write_quality_csv(path: str | Path, records: Sequence[InstanceQuality],
                      categories: dict[int, str] | None = None) -> Path:
    """Write every record as a CSV row (columns CSV_COLUMNS; floats with 6 decimals; None empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in quality_rows(records, categories):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    path = Path(path)
    atomic_write_text(path, buffer.getvalue())
    return path


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def write_figure_png(path: str | Path, fig) -> Path:
    """Save a matplotlib Figure (``core.figures``) as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
