"""The annotation state the window edits, with undo, events and autosave; no Qt."""

from .events import EventEmitter, SessionEvent, SessionEvents
from .history import Change, History, MaskDiff
from .model import STATUSES, UNREVIEWED_CHOICES, ImageState, InstanceState, Session, open_session
from .store import SessionStore, default_session_path

__all__ = [
    "Change", "EventEmitter", "History", "ImageState", "InstanceState", "MaskDiff", "STATUSES", "Session",
    "SessionEvent", "SessionEvents", "SessionStore", "UNREVIEWED_CHOICES", "default_session_path", "open_session",
]
