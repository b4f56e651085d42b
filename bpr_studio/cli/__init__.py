"""The ``bpr-studio`` command line: one module per subcommand, each with ``add_arguments`` and ``run``.

A subcommand module imports only the standard library and core.config (a dataclass) at module level;
heavy imports (torch, Qt) happen inside ``run`` so ``bpr-studio --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.config import (DEFAULT_MODEL, DEFAULT_WEIGHTS, MODELS, PAPER_WEIGHTS, SHIPPED_WEIGHTS, RefinerConfig,
                           weights_path)

# name -> one-line help; the module is bpr_studio.cli.<name>
COMMANDS = {
    "refine": "refine coarse instance masks (COCO results) with BPR",
    "convert": "convert a dataset between COCO, Cityscapes and labelme",
    "simulate": "make Mask R-CNN-like coarse predictions from ground truth",
    "synth": "write a synthetic training dataset with exact masks",
    "split": "split a COCO annotation file by image into training and validation files",
    "train": "train a BPR refinement network",
    "adapt": "fine-tune the refiner on corrected masks (kept only when it beats the base weights)",
    "eval": "score predictions against ground truth (AP, AF, mean IoU)",
    "oracle": "replace predicted pixels near the boundary by ground truth (upper bound)",
    "inspect": "per-instance quality report: where refinement helped and where it hurt",
    "gui": "open the BPR Studio window",
}


def switch(text: str) -> bool:
    """An on/off option value: yes/no, on/off, true/false, 1/0 (any case)."""
    value = {"yes": True, "on": True, "true": True, "1": True, "no": False, "off": False, "false": False,
             "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value


# RefinerConfig field -> (option, type, help); defaults come from the dataclass
REFINER_OPTIONS = {
    "patch_size": ("--patch-size", int, "boundary patch side in image pixels"),
    "padding": ("--padding", int, "context around each patch in pixels, seen by the network, not written back"),
    "input_size": ("--input-size", int, "network input side in pixels"),
    "nms_thr": ("--nms-thr", float, "patch NMS IoU threshold (higher keeps more, more overlapping patches)"),
    "min_size": ("--min-size", int, "keep the coarse mask of instances whose box is shorter than this on its "
                                    "longer side, in pixels (0 refines all)"),
    "batch_size": ("--batch-size", int, "patches per network forward pass"),
    "attached_only": ("--attached-only", switch, "yes: undo the changes not connected to the coarse boundary "
                                                 "(islands and holes opened away from it); no: keep every change"),
    "margin": ("--margin", float, "a pixel leaves its coarse value only where the refined probability passes 0.5 "
                                  "by more than this, in [0, 0.5) (higher: fewer instances made worse, smaller "
                                  "corrections)"),
    "mirror": ("--mirror", switch, "yes: also run the network on every patch mirrored left-right and average the "
                                   "two (boundary F up 0.1-0.6 points, twice the network's time); no: half the "
                                   "network's time"),
    "max_shift": ("--max-shift", int, "move boundaries by at most this many pixels: pixels farther from the coarse "
                                      "boundary keep their coarse value, for coarse masks known to be close, such as "
                                      "old annotations (0: no limit)"),
    "snap": ("--snap", int, "move refined boundaries onto the image's edges with a colour guided filter of this "
                            "radius in pixels (0: off, for masks wanted like a drawn polygon rather than right to the "
                            "pixel; README, Snapping to the image's edges)"),
}


def add_weights_argument(parser: argparse.ArgumentParser, text: str = "refinement weights") -> None:
    """``--weights`` (a Path, a shipped file's name resolved; None = the shipped default)."""
    parser.add_argument("--weights", type=weights_path, metavar="FILE|fast|precise|paper",
                        help=f"{text}: a weights file, or a shipped one by name: fast ({DEFAULT_WEIGHTS}, the "
                             f"default, {MODELS[DEFAULT_MODEL].description}, input 64), precise "
                             f"({SHIPPED_WEIGHTS['precise']}, the same at input 128: more exact on real "
                             f"photographs, 6-7x the CPU time), paper ({PAPER_WEIGHTS}, {MODELS['hr18s'].description})")


def add_refiner_arguments(parser: argparse.ArgumentParser, fields=tuple(REFINER_OPTIONS)) -> None:
    """Options for the RefinerConfig ``fields`` (names of REFINER_OPTIONS), in a group "refinement";
    their argparse default is None, so :func:`refiner_config` fills what was not given from the dataclass."""
    group = parser.add_argument_group("refinement")
    for name in fields:
        option, kind, text = REFINER_OPTIONS[name]
        default = getattr(RefinerConfig, name)
        shown = ("the size the weights were trained at" if default is None
                 else ("yes" if default else "no") if isinstance(default, bool) else default)
        group.add_argument(option, dest=name, type=kind, default=None, metavar="yes|no" if kind is switch else None,
                           help=f"{text} (default: {shown})")
    parser.set_defaults(_refiner_fields=tuple(fields))


def refiner_config(args: argparse.Namespace) -> RefinerConfig:
    """The RefinerConfig of the options :func:`add_refiner_arguments` added (those not given keep the
    dataclass defaults)."""
    given = {name: getattr(args, name) for name in args._refiner_fields if getattr(args, name) is not None}
    return RefinerConfig(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpr-studio", description="Boundary Patch Refinement for instance masks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bpr-studio``. Returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError) as exc:  # bad input: DatasetError, WeightsError, a bad option, a file
        print(f"bpr-studio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bpr-studio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
