"""What the window shows, without Qt: the selected instance, which masks, the diff view, colours, hidden instances.

A view model in the napari manner: the window's widgets set it, it announces each change on
``changed`` (a ``ViewEvent``), and the drawing follows the events; a script or a test can drive or
read it without widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import EventEmitter

MASK_MODES = ("final", "refined", "coarse")
COLOR_BY = ("instance", "class")
# the patch overlay: no patches, the selected instance's, every shown instance's
PATCH_MODES = ("off", "selected", "all")


@dataclass(frozen=True)
class ViewEvent:
    """kind: "selection", "mask_mode", "diff", "color_by" or "visibility"; instance: for "visibility",
    the instance shown or hidden."""

    kind: str
    instance: int | None = None


class ViewState:
    """selected: instance index or None; mask_mode: one of MASK_MODES; diff: the refinement diff view
    is on; color_by: one of COLOR_BY; hidden: instances not drawn. Setters emit a ViewEvent when the
    value changes and return whether it did."""

    def __init__(self) -> None:
        self.selected: int | None = None
        self.mask_mode = "final"
        self.diff = False
        self.color_by = "instance"
        self.hidden: set[int] = set()
        self.changed = EventEmitter()

    def new_image(self) -> None:
        """Another image is shown: nothing selected or hidden (no event: the image change redraws all)."""
        self.selected = None
        self.hidden = set()

    def select(self, j: int | None) -> bool:
        return self._set("selected", j, "selection")

    def set_mask_mode(self, mode: str) -> bool:
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
        return self._set("mask_mode", mode, "mask_mode")

    def set_diff(self, on: bool) -> bool:
        return self._set("diff", bool(on), "diff")

    def set_color_by(self, by: str) -> bool:
        if by not in COLOR_BY:
            raise ValueError(f"color_by must be one of {COLOR_BY}, got {by!r}")
        return self._set("color_by", by, "color_by")

    def set_visible(self, j: int, visible: bool) -> bool:
        if (j not in self.hidden) == visible:
            return False
        (self.hidden.discard if visible else self.hidden.add)(j)
        self.changed.emit(ViewEvent("visibility", j))
        return True

    def shown_name(self, inst) -> str:
        """Which mask of an InstanceState the mask mode shows: "coarse", "refined" or its final mask's name."""
        if self.mask_mode == "coarse" or (self.mask_mode == "refined" and not inst.has("refined")):
            return "coarse"
        return "refined" if self.mask_mode == "refined" else inst.final_name

    def _set(self, name: str, value, kind: str) -> bool:
        if getattr(self, name) == value:
            return False
        setattr(self, name, value)
        self.changed.emit(ViewEvent(kind))
        return True
