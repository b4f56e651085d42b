"""The ``bpr-studio`` command line: one module per subcommand, each with ``add_arguments`` and ``run``.

A subcommand module imports only the standard library and core.config (a dataclass) at module level;
heavy imports (torch, Qt) happen inside ``run`` so ``bpr-studio --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.config import RefinerConfig

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


def add_min_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--min-size``, shared by the subcommands that refine (default: RefinerConfig's)."""
    default = RefinerConfig.min_size
    parser.add_argument("--min-size", type=int, default=default,
                        help="keep the coarse mask of instances whose box is shorter than this on its longer "
                             f"side, in pixels (default {default}; 0 refines all)")


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
