"""What a session gives adaptation: its corrected instances, where the adapted weights go, what may be re-refined.

A corrected instance is one whose final mask the annotator set: accepted after refinement, or
touched up (brush, eraser, polygon; status "edited"). Rejected and unreviewed instances, and
instances accepted without a refinement, give nothing. Re-refining with adapted weights touches
unreviewed instances only: accepted, edited and rejected work never changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.adapt import CorrectedImage
from .export import DatasetSource
from .model import Session, open_session

ADAPTED_SUFFIX = ".adapted.pt"


def is_corrected(inst) -> bool:
    """Whether an InstanceState's final mask was set by the annotator (see the module docstring)."""
    return inst.status in ("accepted", "edited") and inst.final_name != "coarse"


def corrected_images(session: Session) -> list[CorrectedImage]:
    """The corrections of every image that has any: coarse mask as input, final mask as target."""
    images = []
    for image in session.images:
        chosen = [inst for inst in image.instances if is_corrected(inst)]
        if chosen:
            images.append(CorrectedImage(image.path.name, image.read_image, [inst.coarse for inst in chosen],
                                         [inst.final for inst in chosen]))
    return images


def corrected_count(session: Session) -> int:
    """How many instances of the session are corrections."""
    return sum(is_corrected(inst) for image in session.images for inst in image.instances)


def adapted_weights_path(session: Session) -> Path:
    """``<session name>.adapted.pt`` beside the session file. Raises ValueError for an unsaved session."""
    if session.store is None:
        raise ValueError("the session is not saved to a file: adapted weights go beside the session file")
    return session.store.path.with_name(session.store.path.stem + ADAPTED_SUFFIX)


def unreviewed_instances(session: Session) -> dict[int, list[int]]:
    """{image index: unreviewed instance indices}: what re-refining with new weights may change."""
    out = {}
    for i, image in enumerate(session.images):
        js = [j for j, inst in enumerate(image.instances) if inst.status == "unreviewed"]
        if js:
            out[i] = js
    return out


def reopen_session(path: str | Path) -> Session:
    """Open a saved session from its file alone, with the dataset it names. Raises ValueError naming the
    file when it is not a session file or does not say which dataset it belongs to (older files)."""
    path = Path(path)
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable session file ({exc})") from exc
    source = DatasetSource.from_dict(snapshot.get("source") if isinstance(snapshot, dict) else None)
    if source is None:
        raise ValueError(f"{path}: the session file does not name its dataset (written by an older version); "
                         f"open it in the window once, or use --annotations and --predictions")
    return open_session(source.path, format=source.format, annotations=source.annotations,
                        predictions=source.predictions, session_path=path)
