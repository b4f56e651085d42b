"""Results written as images finish, so a killed run loses nothing: a shard folder beside the output.

``.<out name>.parts/`` holds ``job.json`` (what the results were made from) and ``part-NNNN.jsonl``
files, one per run, one line per refined image, each line flushed to disk as the image finishes.
A resumed run reads every complete line (a line cut off by a kill is ignored) and skips those images;
the final merge writes the output file atomically and then removes the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..io.atomic import atomic_write_json
from .work import ImageResult


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardStore:
    """The shard folder of output file ``out``. fingerprint: a JSON-able dict naming the inputs and
    settings; a resume with another fingerprint is refused (its shards would not fit)."""

    def __init__(self, out: str | Path, fingerprint: dict):
        out = Path(out)
        self.folder = out.parent / f".{out.name}.parts"
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self._part = None

    def start(self, resume: bool) -> tuple[dict[int, ImageResult], int]:
        """Open the folder for this run. Returns (results kept from earlier runs, results discarded).

        resume: keep the shards of an earlier run with the same fingerprint (ValueError when they were
        made from other inputs or settings). Without resume, earlier shards are removed.
        """
        kept: dict[int, ImageResult] = {}
        discarded = 0
        if self.folder.is_dir():
            earlier = self.load()
            if not resume:
                discarded = len(earlier)
                shutil.rmtree(self.folder)
            elif self._stored_fingerprint() != self.fingerprint:
                raise ValueError(f"{self.folder}: these shards were made from other inputs or settings "
                                 f"({differences(self._stored_fingerprint(), self.fingerprint)}); run with the "
                                 "same ones, or without --resume to start over")
            else:
                kept = earlier
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "job.json", self.fingerprint, indent=1)
        number = len(list(self.folder.glob("part-*.jsonl")))
        self._part = open(self.folder / f"part-{number:04d}.jsonl", "a", encoding="utf-8")
        return kept, discarded

    def add(self, result: ImageResult) -> None:
        """Append one finished image and flush it to disk."""
        self._part.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
        self._part.flush()
        os.fsync(self._part.fileno())

    def load(self) -> dict[int, ImageResult]:
        """Every result in the folder, by task index (complete lines only)."""
        results = {}
        for part in sorted(self.folder.glob("part-*.jsonl")):
            for line in part.read_text(encoding="utf-8").splitlines():
                try:
                    result = ImageResult(**json.loads(line))
                except (ValueError, TypeError):  # the line a kill cut off
                    continue
                results[result.index] = result
        return results

    def close(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None

    def remove(self) -> None:
        """Delete the folder (after the merged output file is in place)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stored_fingerprint(self) -> dict | None:
        try:
            return json.loads((self.folder / "job.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def differences(before: dict | None, now: dict) -> str:
    """What differs between two fingerprints, for a message: "config: mirror False, now True; predictions"
    (a setting with both values, an input file by its key); "no record of them" when ``before`` is None."""
    if before is None:
        return "no record of them"
    said = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            fields = [f"{name} {old.get(name)}, now {new.get(name)}" for name in sorted(set(old) | set(new))
                      if old.get(name) != new.get(name)]
            said.append(f"{key}: " + "; ".join(fields))
        else:
            said.append(key)
    return "; ".join(said)
