"""Figures of the failure-inspection report: the IoU scatter and the patch gallery.

Drawn on plain ``matplotlib.figure.Figure`` objects (no pyplot state), so the same drawing serves
the PNG report (saved by ``io.report.write_figure_png``) and the window's embedded canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .metrics import mask_boundary
from .patches import crop_boxes
from .quality import InstanceQuality, PatchQuality

COARSE_COLOR = (255, 140, 0)
REFINED_COLOR = (0, 160, 255)
GT_COLOR = (40, 220, 80)
PROBABILITY_CMAP = "magma"
WORSE_COLOR = "#d62728"
BETTER_COLOR = "#1f77b4"


# ---- scatter -----------------------------------------------------------------------------------

def scatter_points(records: Sequence[InstanceQuality]) -> tuple[list[InstanceQuality], np.ndarray]:
    """The records that have IoU before and after, and their points: (N, 2) float (x = before,
    y = after)."""
    kept = [q for q in records if q.iou_change is not None]
    xy = np.array([[q.iou_before, q.iou_after] for q in kept], float).reshape(-1, 2)
    return kept, xy


def draw_scatter(ax, records: Sequence[InstanceQuality],
                 selected: tuple[int, int] | None = None) -> list[InstanceQuality]:
    """Draw IoU before (x) against IoU after (y), one dot per instance, with the diagonal.

    Both axes run from the lowest IoU shown (rounded down to 0.1) to 1, so dots crowded near 1
    spread out. Dots below the diagonal (refinement hurt) are red, the others blue; ``selected``
    (image_index, instance_index) is ringed. The dots are one collection (``ax.collections[0]``)
    whose point i is the i-th returned record, so a pick event's ``ind`` indexes the returned list.
    """
    kept, xy = scatter_points(records)
    worse = xy[:, 1] < xy[:, 0]
    colors = np.where(worse, WORSE_COLOR, BETTER_COLOR) if len(kept) else []
    ax.scatter(xy[:, 0], xy[:, 1], s=18, c=colors, alpha=0.75, linewidths=0, picker=True, pickradius=5, zorder=3)
    ax.plot([0, 1], [0, 1], color="0.4", linewidth=1, linestyle="--", zorder=2)
    for q, (x, y) in zip(kept, xy):
        if selected == (q.image_index, q.instance_index):
            ax.scatter([x], [y], s=120, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4)
    low = _axis_start(xy)
    ax.set_xlim(low - 0.02, 1.02)
    ax.set_ylim(low - 0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("IoU before refinement")
    ax.set_ylabel("IoU after refinement")
    ax.set_title(f"{len(kept)} instances, {int(np.count_nonzero(worse))} worse (below the diagonal)", fontsize=9)
    ax.grid(True, linewidth=0.3)
    return kept


def _axis_start(xy: np.ndarray) -> float:
    """Start of both axes: the lowest coordinate rounded down to a multiple of 0.1 (0 without points)."""
    if not len(xy):
        return 0.0
    return max(0.0, np.floor(xy.min() * 10.0 + 1e-9) / 10.0)


def scatter_figure(records: Sequence[InstanceQuality], dpi: int = 120) -> Figure:
    """The IoU scatter of ``records`` on a 5-inch square figure."""
    fig = Figure(figsize=(5, 5), dpi=dpi, layout="constrained")
    draw_scatter(fig.add_subplot(), records)
    return fig


# ---- patch gallery ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchRow:
    """The tiles of one boundary patch, each (P, P, 3) uint8 RGB, and its figures.

    tiles: ordered mapping title -> tile: "image", "coarse", "probability" (when known),
    "refined", "ground truth" (when known).
    """

    patch: PatchQuality
    tiles: dict[str, np.ndarray]

    @property
    def caption(self) -> str:
        """One line: the patch index and its IoU change (or uncertainty)."""
        p = self.patch
        if p.iou_change is not None:
            return f"patch {p.index}: IoU {p.iou_before:.3f} \u2192 {p.iou_after:.3f} ({p.iou_change:+.3f})"
        if p.uncertain_share is not None:
            return f"patch {p.index}: {100 * p.uncertain_share:.0f}% uncertain"
        return f"patch {p.index}"


def patch_rows(
    image: np.ndarray,
    coarse: np.ndarray,
    refined: np.ndarray,
    patches: Sequence[PatchQuality],
    probs: np.ndarray | None = None,
    gt: np.ndarray | None = None,
) -> list[PatchRow]:
    """Tiles for each patch, in the order of ``patches`` (e.g. ``worst_patches_first``).

    image: (H, W, 3) uint8 RGB. coarse, refined, gt: (H, W) bool (gt None without ground truth).
    probs: (K, P, P) float32 indexed by ``PatchQuality.index``, or None. Masks are drawn as a
    tint over the dimmed image, with the ground truth's boundary as a line on the coarse and
    refined tiles; the probability as a colour map (0 black, 1 white-yellow).
    """
    rows = []
    cmap = colormaps[PROBABILITY_CMAP]
    gt_edge = mask_boundary(gt) if gt is not None else None
    for p in patches:
        box = np.asarray([p.box], np.int32)
        img = crop_boxes(image, box)[0]
        edge = crop_boxes(gt_edge, box)[0] if gt_edge is not None else None
        tiles = {"image": img, "coarse": _tint(img, crop_boxes(coarse, box)[0], COARSE_COLOR, edge)}
        if probs is not None:
            tiles["probability"] = (cmap(probs[p.index])[..., :3] * 255).astype(np.uint8)
        tiles["refined"] = _tint(img, crop_boxes(refined, box)[0], REFINED_COLOR, edge)
        if gt is not None:
            tiles["ground truth"] = _tint(img, crop_boxes(gt, box)[0], GT_COLOR)
        rows.append(PatchRow(patch=p, tiles=tiles))
    return rows


def _tint(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int],
          edge: np.ndarray | None = None) -> np.ndarray:
    """(S, S, 3) uint8 image dimmed to 60 %, with the (S, S) bool mask blended 55 % with color and
    the (S, S) bool ``edge`` pixels, if given, in GT_COLOR."""
    out = image.astype(np.float32) * 0.6
    out[mask] = out[mask] * 0.45 + np.float32(color) * 0.55
    if edge is not None:
        out[edge] = GT_COLOR
    return out.astype(np.uint8)


def draw_gallery(fig: Figure, rows: Sequence[PatchRow], title: str = "") -> None:
    """Lay the rows out on ``fig``: one row of tiles per patch, titled columns, caption at left."""
    if not rows:
        fig.text(0.5, 0.5, "no boundary patches", ha="center", va="center")
        return
    columns = list(rows[0].tiles)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        for c, name in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(row.tiles[name], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(row.caption.replace(": ", ":\n", 1), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)


def gallery_figure(rows: Sequence[PatchRow], title: str = "", dpi: int = 100) -> Figure:
    """A patch gallery figure (about 1.6 inch per tile)."""
    n_cols = len(rows[0].tiles) if rows else 1
    fig = Figure(figsize=(1.6 * n_cols + 0.6, 1.6 * max(len(rows), 1) + 0.5), dpi=dpi, layout="constrained")
    draw_gallery(fig, rows, title)
    return fig
