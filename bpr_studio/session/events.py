"""Session events without Qt: a plain list of callbacks per event kind (napari-like)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class SessionEvent:
    """What changed.

    kind: "status" (review status), "mask" (edited mask), "refined" (a refinement result arrived),
    "patches" (an instance's refinement patches changed, not its masks), "history" (undo/redo
    availability), "saved" (the session file was written).
    image: image index; instance: instance index, or None when the event concerns the whole image
    or session.
    window: for "mask" events, (x0, y0, x1, y1) image pixels, end-exclusive: the instance's final
    mask (and its edited-or-refined mask) changed only inside it, so a view redraws that
    rectangle only (a brush stroke: the stroke's box). None: anywhere in the instance.
    """

    kind: str
    image: int | None = None
    instance: int | None = None
    window: tuple[int, int, int, int] | None = None


class EventEmitter:
    """Calls every connected callback with the event, in connection order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[SessionEvent], None]] = []

    def connect(self, callback: Callable[[SessionEvent], None]) -> Callable[[SessionEvent], None]:
        """Register ``callback(event)``; returns it so this works as a decorator."""
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[[SessionEvent], None]) -> None:
        self._callbacks.remove(callback)

    def emit(self, event: SessionEvent) -> None:
        for callback in list(self._callbacks):
            callback(event)


class SessionEvents:
    """The emitters of a Session: ``changed`` (status, mask, refined, history) and ``saved``."""

    def __init__(self) -> None:
        self.changed = EventEmitter()
        self.saved = EventEmitter()
