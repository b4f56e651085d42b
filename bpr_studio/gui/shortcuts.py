"""Every key of the window in one table: action name -> keys and menu text.

The actions (their shortcuts, menu texts and tooltips), the status-bar hints, the View panel's labels
and the Help dialog all read their keys here, so a key is changed in one place. No widgets: a
``Shortcut`` is plain data (the keys as Qt key-sequence strings, e.g. "Ctrl+Shift+Z").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    """keys: the key sequences, the first one shown in hints; text: the menu text ("&" marks the
    mnemonic); description: what it does, for tooltips and the Help table."""

    keys: tuple[str, ...]
    text: str

    @property
    def description(self) -> str:
        return self.text.replace("&", "").rstrip(".")


SHORTCUTS: dict[str, Shortcut] = {
    "open": Shortcut(("Ctrl+O",), "&Open dataset..."),
    "export": Shortcut(("Ctrl+E",), "&Export..."),
    "save": Shortcut(("Ctrl+S",), "&Save session now"),
    "quit": Shortcut(("Ctrl+Q",), "&Quit"),
    "accept": Shortcut(("A",), "&Accept"),
    "reject": Shortcut(("R",), "&Reject (keep coarse)"),
    "accept_all": Shortcut(("Ctrl+Return", "Ctrl+Enter"), "Accept all &refined on image"),
    "next_unreviewed": Shortcut(("N",), "&Next unreviewed"),
    "prev_unreviewed": Shortcut(("P",), "&Previous unreviewed"),
    "next_image": Shortcut(("D",), "Next &image"),
    "prev_image": Shortcut(("Shift+D",), "Previous i&mage"),
    "undo": Shortcut(("Ctrl+Z",), "&Undo"),
    "redo": Shortcut(("Ctrl+Shift+Z", "Ctrl+Y"), "&Redo"),
    "tool_select": Shortcut(("S",), "&Select"),
    "tool_brush": Shortcut(("B",), "&Brush"),
    "tool_eraser": Shortcut(("E",), "&Eraser"),
    "tool_polygon": Shortcut(("G",), "&Polygon"),
    "brush_smaller": Shortcut(("[",), "Brush smaller"),
    "brush_bigger": Shortcut(("]",), "Brush bigger"),
    "polygon_add": Shortcut(("Return", "Enter"), "Polygon: add"),
    "polygon_subtract": Shortcut(("Shift+Return", "Shift+Enter"), "Polygon: subtract"),
    "polygon_back": Shortcut(("Backspace",), "Polygon: remove last point"),
    "escape": Shortcut(("Escape",), "Cancel polygon / back to Select"),
    "cycle_masks": Shortcut(("V",), "Cycle masks: final / refined / coarse"),
    "diff": Shortcut(("X",), "Diff: added / removed by refinement"),
    "color_by": Shortcut(("C",), "Colour by instance / class"),
    "ground_truth": Shortcut(("T",), "Ground-truth outlines"),
    "hide": Shortcut(("H",), "Hide / show selected instance"),
    "patches": Shortcut(("O",), "Boundary &patches on / off"),
    "fit": Shortcut(("Home", "Ctrl+0"), "&Fit to window"),
    "actual_size": Shortcut(("1", "Ctrl+1"), "&Actual size (1:1)"),
    "zoom_in": Shortcut(("Ctrl++", "Ctrl+=", "+", "="), "Zoom &in"),
    "zoom_out": Shortcut(("Ctrl+-", "-"), "Zoom &out"),
    "reset_layout": Shortcut((), "&Reset window layout"),
    "refine_image": Shortcut(("Ctrl+R",), "Refine &image"),
    "refine_selected": Shortcut(("F",), "Refine &selected"),
    "refine_all": Shortcut(("Ctrl+Shift+R",), "Refine &dataset"),
    "cancel": Shortcut((), "&Cancel refinement"),
    "help_keys": Shortcut(("F1",), "&Keyboard shortcuts"),
}

MOUSE = (("wheel", "zoom at the cursor"), ("middle drag, Space + drag", "pan"),
         ("click", "select an instance (again: the next one under the cursor)"))
"""(what, what it does) for the mouse, after the keys in the Help table."""


def key(name: str) -> str:
    """The first key of action ``name``, as hints show it ("Ctrl+R", "Esc" for Escape, "Enter" for Return)."""
    first = SHORTCUTS[name].keys[0]
    return first.replace("Escape", "Esc").replace("Return", "Enter")


def keys(name: str) -> tuple[str, ...]:
    return SHORTCUTS[name].keys


def label(text: str, name: str) -> str:
    """A panel label with its key: label("Masks", "cycle_masks") -> "Masks (V)"."""
    return f"{text} ({key(name)})"


def start_hint() -> str:
    """The status bar's hint when nothing else is said."""
    return " · ".join((f"{key('refine_image')} refines the image", f"{key('next_unreviewed')} next unreviewed",
                       f"{key('accept')} accept", f"{key('reject')} reject", f"{key('patches')} patches",
                       f"{key('help_keys')} all keys"))
