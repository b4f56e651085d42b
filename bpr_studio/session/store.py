"""The session file on disk: an atomic JSON snapshot plus an append-only journal of changes since it.

``NAME.bprsession`` holds the whole state (statuses, refined and edited masks as COCO RLE) and the
sequence number of the last change it includes; ``NAME.bprsession.journal`` holds one JSON line
per change made after it, appended and flushed as it happens, so saving a brush stroke costs one
short line however large the image. Loading replays the journal lines newer than the snapshot and
ignores a torn last line (a crash in the middle of writing it). ``write_snapshot`` (compaction)
writes a new snapshot atomically, then empties the journal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from ..io.atomic import atomic_copy, atomic_write_text, folder_is_writable

log = logging.getLogger(__name__)

SESSION_SUFFIX = ".bprsession"
FORMAT = "bpr-studio-session"
VERSION = 1


def beside_session_path(dataset_path: str | Path, predictions: str | Path | None = None) -> Path:
    """The session file beside a dataset: ``<folder>/<name>[.<predictions stem>].bprsession`` (for a
    folder, the file is inside it). dataset_path: the folder or annotation file that was opened.
    predictions: the predictions file, if one was opened (a different predictions file is a
    different session)."""
    dataset_path = Path(dataset_path).resolve()
    folder = dataset_path if dataset_path.is_dir() else dataset_path.parent
    stem = dataset_path.name if dataset_path.is_dir() else dataset_path.stem
    if predictions is not None:
        stem += "." + Path(predictions).stem
    return folder / f"{stem}{SESSION_SUFFIX}"


def default_session_path(dataset_path: str | Path, predictions: str | Path | None = None,
                         beside: bool = True) -> Path:
    """Where the session of a dataset lives: beside it (:func:`beside_session_path`), used when
    ``beside`` and that folder is writable and not marked read-only
    (:func:`bpr_studio.io.atomic.folder_is_writable`); otherwise
    ``$XDG_DATA_HOME/bpr-studio/sessions/<name>-<hash>.bprsession`` (default ~/.local/share).
    """
    path = beside_session_path(dataset_path, predictions)
    if beside and folder_is_writable(path.parent) and (not path.exists() or os.access(path, os.W_OK)):
        return path
    key = f"{Path(dataset_path).resolve()}|{Path(predictions).resolve() if predictions else ''}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "bpr-studio" / "sessions" / f"{path.stem}-{digest}{SESSION_SUFFIX}"


def carry_over_session(source: Path, target: Path) -> bool:
    """Copy a session file and its journal to ``target`` when ``target`` has none yet: a session
    left beside a dataset whose folder has since become read-only goes on in the user's folder
    instead of starting again. The source is only read. Returns whether it copied; a copy that
    fails is logged and the session starts from ``target`` as it is."""
    journal = source.with_name(source.name + ".journal")
    if source == target or not source.is_file() or target.exists():
        return False
    try:
        if journal.is_file():  # the journal first: the snapshot's presence says the copy is whole
            atomic_copy(journal, target.with_name(target.name + ".journal"))
        atomic_copy(source, target)
    except OSError as exc:
        log.warning("could not carry over the session %s to %s: %s", source, target, exc)
        return False
    log.info("session %s carried over to %s (its folder is read-only)", source, target)
    return True


class SessionStore:
    """Reads and writes one session file and its journal.

    path: the snapshot file; the journal is ``path`` + ".journal". compact_every: journal lines
    after which :attr:`needs_compaction` turns true.
    """

    def __init__(self, path: str | Path, compact_every: int = 200) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.compact_every = compact_every
        self.seq = 0
        self._since_snapshot = 0
        self._journal = None

    def load(self) -> tuple[dict | None, list[dict]]:
        """Read the snapshot (None when there is none) and the journal entries newer than it, in order.

        Raises ValueError naming the file when the snapshot is not a session file. A journal line
        that does not parse ends the journal (it was being written when the program died).
        """
        snapshot = None
        if self.path.is_file():
            try:
                snapshot = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{self.path}: unreadable session file ({exc})") from exc
            if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not a BPR Studio session file (expected format={FORMAT!r})")
            if snapshot.get("version") != VERSION:
                raise ValueError(f"{self.path}: session file version {snapshot.get('version')}, "
                                 f"this program reads version {VERSION}")
        base_seq = int(snapshot.get("seq", 0)) if snapshot else 0
        entries = []
        if self.journal_path.is_file():
            with open(self.journal_path, "rb") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        break
                    if not isinstance(entry, dict) or not line.endswith(b"\n"):
                        break
                    if int(entry.get("seq", 0)) > base_seq:
                        entries.append(entry)
        self.seq = max([base_seq] + [int(e["seq"]) for e in entries])
        self._since_snapshot = len(entries)
        return snapshot, entries

    def append(self, entry: dict) -> None:
        """Append one change (a JSON-able dict; a ``seq`` number is added) and flush it to disk."""
        self.seq += 1
        line = json.dumps({"seq": self.seq, **entry}, separators=(",", ":")) + "\n"
        if self._journal is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(self.journal_path, "ab")
        self._journal.write(line.encode("utf-8"))
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._since_snapshot += 1

    @property
    def needs_compaction(self) -> bool:
        return self._since_snapshot >= self.compact_every

    def write_snapshot(self, state: dict) -> None:
        """Write the whole state atomically (it must include every journalled change), then empty the journal."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": VERSION, "seq": self.seq, **state}
        atomic_write_text(self.path, json.dumps(data, separators=(",", ":")))
        self.close()
        with open(self.journal_path, "wb"):
            pass
        self._since_snapshot = 0

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
