"""Fast inference of any refinement network: ONNX Runtime (float32 or static int8) with a disk cache,
channels_last PyTorch, CUDA float16 autocast.

Nothing here knows the architecture: :class:`FastInference` takes an ``nn.Module`` mapping
``(B, C, S, S)`` float32 to ``(B, K, S, S)`` logits and the input side ``S`` it is run at.

ONNX Runtime graphs are exported once per (weights, input size, mode, runtime versions) and kept
in the user cache folder (``$XDG_CACHE_HOME/bpr-studio`` or ``~/.cache/bpr-studio``, override with
``BPR_STUDIO_CACHE``), so a second start skips the export (2-7 s on an idle 2-core machine) and the
int8 calibration and quantisation (tens of seconds). An entry is one file: a sha256 line, then the
ONNX bytes; written atomically (:func:`bpr_studio.core.atomic.atomic_write`); an entry that is
missing, unreadable, or fails its checksum is rebuilt and rewritten, never fatal. An unwritable
cache folder only costs the export.

BatchNorm: ``torch.onnx.export`` of a model in eval mode folds every Conv -> BatchNorm pair into the
conv, and ONNX Runtime's graph optimisations (level ALL) fuse Conv + Add + ReLU and the like on load.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import io
import logging
import os
import platform
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .config import RefinerConfig

_log = logging.getLogger(__name__)

CACHE_FORMAT = "bpr-studio-onnx/1"
CALIBRATION_VERSION = 1  # bump when calibration_patches changes, so int8 entries are rebuilt
EXPORT_VERSION = 2  # bump when the exported graphs change (2: constant paddings folded into Conv), so entries are rebuilt
CPU_MODES = ("onnxruntime-int8", "onnxruntime", "channels_last", "eager")
CUDA_MODES = ("autocast-fp16", "eager")
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        _log.warning(message, *args)


def cache_folder() -> Path:
    """Where exported graphs are kept: $BPR_STUDIO_CACHE, else $XDG_CACHE_HOME/bpr-studio, else
    ~/.cache/bpr-studio."""
    if os.environ.get("BPR_STUDIO_CACHE"):
        return Path(os.environ["BPR_STUDIO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bpr-studio"


def weights_digest(model: nn.Module) -> str:
    """A 16-hex-digit sha256 of the model's class and state dict (names, dtypes, shapes, values)."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI): its int8 multiply-adds accumulate in
    32 bits. Read from /proc/cpuinfo on Linux, else from NumPy's CPU feature table (AVX512-VNNI only);
    False when neither says (other CPUs: ARM, or x86 without VNNI)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        return re.search(r"\b(avx512_vnni|avx_vnni)\b", Path("/proc/cpuinfo").read_text()) is not None
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512VNNI"))


def int8_weight_bits() -> int:
    """Bits of the int8 graph's weights on this CPU: 8 with VNNI; 7 elsewhere (``reduce_range``), as
    ONNX Runtime's u8 x s8 kernels for AVX2 without VNNI add pairs of products in 16 bits, which
    saturate with 8-bit weights and uint8 activations. Untested on ARM, where 7 stays (the safe side).
    With 8 bits int8 refines like float32 more often: docs/engine_bench.md."""
    return 8 if cpu_has_vnni() else 7


def has_onnxruntime() -> bool:
    """True when the ``onnxruntime`` package is installed (found, not imported: importing it and its
    quantisation tools takes seconds, paid only when a graph is built)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _has_quantization() -> bool:
    return has_onnxruntime() and importlib.util.find_spec("onnx") is not None


def read_cache_entry(path: Path) -> bytes | None:
    """The ONNX bytes of a cache entry, or None when it is missing, unreadable or fails its checksum."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header, _, body = data.partition(b"\n")
    if header != f"{CACHE_FORMAT} {hashlib.sha256(body).hexdigest()}".encode():
        return None
    return body


def write_cache_entry(path: Path, body: bytes) -> None:
    """Write ONNX bytes as a cache entry (atomically; a failure is logged, not raised)."""
    header = f"{CACHE_FORMAT} {hashlib.sha256(body).hexdigest()}\n".encode()
    try:
        atomic_write(path, lambda f: f.write(header + body))
    except OSError as exc:
        _warn_once(f"cache:{path.parent}", "cannot write the model cache %s (%s); the model will be exported "
                   "again at the next start", path.parent, exc)


def calibration_crops(patch_size: int = RefinerConfig.patch_size, padding: int = 0, count: int = 64,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boundary-patch crops for int8 calibration, made on the spot: synthetic scenes
    (:func:`bpr_studio.core.synth.make_scene`, photographs and textures bundled with scikit-image)
    with Mask R-CNN-like coarse masks (:func:`bpr_studio.core.simulate.coarse_mask`), at most 3
    patches per instance. Deterministic for a seed; about 2-5 s.

    Returns (image crops (count, S, S, 3) uint8, mask crops (count, S, S) bool), S = patch_size +
    2 padding. Calibrated this way, int8 agrees with float32 on as many patch pixels of COCO
    photographs as when calibrated on COCO patches (docs/engine_bench.md).
    """
    from .patches import boundary_patches, crop_boxes
    from .simulate import coarse_mask
    from .synth import make_scene

    rng = np.random.default_rng(seed)
    images, masks, total = [], [], 0
    while total < count:
        image, objects, _ = make_scene(rng)
        for mask in objects:
            coarse = coarse_mask(mask, rng)
            boxes = boundary_patches(coarse, patch_size)[:3]
            if len(boxes):
                images.append(crop_boxes(image, boxes, padding))
                masks.append(crop_boxes(coarse, boxes, padding))
                total += len(boxes)
    return np.concatenate(images)[:count], np.concatenate(masks)[:count]


def calibration_inputs(input_size: int, patch_size: int = RefinerConfig.patch_size, padding: int = 0,
                       **norm) -> torch.Tensor:
    """(64, 4, input_size, input_size) float32: :func:`calibration_crops` as network inputs
    (:func:`bpr_studio.core.patches.network_inputs`; norm: its mean and std, a weights file's
    ``input_norm``, ImageNet's by default). What a Refiner calibrates its int8 graph on, and what an
    int8-aware training run calibrates its emulated ranges on, so the two ranges are the same."""
    from .patches import network_inputs

    return network_inputs(*calibration_crops(patch_size, padding), input_size, **norm)


class FastInference:
    """A network wrapped in the fastest inference mode that keeps its masks.

    model: maps x (B, C, S, S) float32 to logits (B, K, S, S); copied (float32, eval), so later
        changes to it do not reach the wrapper.
    input_size: the side S the caller runs at: part of the cache key and the size ``prepare``
        builds; calls at other sizes build their own graph on first use.
    device: "cpu", "cuda", ...
    mode: "auto" or one of ``CPU_MODES`` / ``CUDA_MODES``. "auto" on CPU: "onnxruntime-int8" when
        ONNX Runtime is installed and ``calibration`` is given, "onnxruntime" when it is installed,
        else "channels_last" (with one logged warning); on CUDA "autocast-fp16"; elsewhere "eager".
    calibration: size -> (N, C, size, size) float32 representative network inputs (int8 only).
    calibration_key: names what ``calibration`` makes beyond the size (e.g. the patch size its crops
        have), so int8 graphs calibrated on other inputs get other cache entries.
    int8_state: a state dict of ``model`` that the int8 graph is made from instead of the model's own
        weights (a weights file's ``int8_state_dict``: fine-tuned so that its int8 graph agrees with
        the float model, core.qat); every other mode runs the model's own weights.
    cache: folder of exported graphs; None disables the disk cache; default :func:`cache_folder`.
    threads: CPU threads for ONNX Runtime; default ``torch.get_num_threads()``. With more than one,
        each call's batch is split into two near-equal parts run side by side by two sessions that
        share the threads: on 2 cores this measured faster than one session with 2 intra-op threads,
        which wait for each other at every operator (docs/engine_bench.md).

    Call with x (B, C, S, S) float32 (any device); returns logits (B, K, S, S) float32 on the
    model's device (CPU for ONNX Runtime). ``mode`` says what runs; it falls back to
    "onnxruntime" when int8 quantisation fails, and to "channels_last" when export or runtime
    fail (logged once each).
    """

    def __init__(self, model: nn.Module, input_size: int | None = None, device: str | torch.device = "cpu",
                 mode: str = "auto", calibration: Callable[[int], np.ndarray | torch.Tensor] | None = None,
                 cache: str | os.PathLike | None | bool = True, threads: int | None = None,
                 calibration_key: str = "", int8_state: dict | None = None):
        self.device = torch.device(device)
        self.model = copy.deepcopy(model).float().eval().to(self.device)
        self.int8_model = None
        if int8_state is not None and self.device.type == "cpu":  # the int8 graph runs on the CPU only
            self.int8_model = copy.deepcopy(self.model)
            self.int8_model.load_state_dict(int8_state)
        self.input_size = input_size
        self.calibration = calibration
        self.calibration_key = calibration_key
        self.cache = cache_folder() if cache is True else (Path(cache) if cache else None)
        self.threads = threads or torch.get_num_threads()
        allowed = {"cpu": CPU_MODES, "cuda": CUDA_MODES}.get(self.device.type, ("eager",))
        if mode == "auto":
            mode = allowed[0] if self.device.type != "cpu" else self._auto_cpu_mode()
        if mode not in allowed:
            raise ValueError(f"inference mode {mode!r} is not available on {self.device.type}; "
                             f"expected one of {('auto',) + allowed}")
        if mode == "onnxruntime-int8" and calibration is None:
            raise ValueError("inference mode 'onnxruntime-int8' needs calibration inputs")
        self._set_mode(mode)
        self._sessions: dict[tuple[int, int], list] = {}  # size -> the sessions that share a batch
        self._pool: ThreadPoolExecutor | None = None
        self._digests: dict[int, str] = {}  # id(model) -> weights_digest
        self.build_seconds: dict[tuple[int, int], tuple[str, float]] = {}  # size -> (how, seconds)

    def _auto_cpu_mode(self) -> str:
        if not has_onnxruntime():
            _warn_once("no-ort", "onnxruntime is not installed: refining with PyTorch, 2-4x slower on CPU "
                       "(pip install 'bpr-studio[onnx]')")
            return "channels_last"
        return "onnxruntime-int8" if self.calibration is not None and _has_quantization() else "onnxruntime"

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "channels_last":
            self.model = self.model.to(memory_format=torch.channels_last)

    def prepare(self) -> "FastInference":
        """Build (or load from the cache) the graph for ``input_size`` now rather than on the first call."""
        if self.mode.startswith("onnxruntime") and self.input_size:
            self._session_or_fallback((self.input_size, self.input_size))
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode.startswith("onnxruntime"):
            sessions = self._session_or_fallback(tuple(x.shape[-2:]))
            if sessions is not None:
                return torch.from_numpy(self._run(sessions, x.detach().to("cpu", torch.float32).contiguous().numpy()))
        x = x.to(self.device, torch.float32)
        with torch.no_grad():  # not inference_mode: callers may still edit the logits in place
            if self.mode == "autocast-fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.model(x).float()
            if self.mode == "channels_last":
                return self.model(x.contiguous(memory_format=torch.channels_last)).contiguous()
            return self.model(x)

    def _run(self, sessions: list, x: np.ndarray) -> np.ndarray:
        """Logits of x (B, C, S, S): each session takes a near-equal part of the batch, side by side."""
        if len(sessions) == 1 or len(x) < 2:
            return sessions[0].run(None, {"x": x})[0]
        parts = np.array_split(x, len(sessions))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(sessions), thread_name_prefix="bpr-onnxruntime")
        return np.concatenate(list(self._pool.map(lambda s, part: s.run(None, {"x": part})[0], sessions, parts)))

    def _session_or_fallback(self, size: tuple[int, int]) -> list | None:
        """The ONNX Runtime sessions for ``size``; on failure, switch mode and return None (int8 -> fp32)."""
        if size in self._sessions:
            return self._sessions[size]
        try:
            session = self._session(size)
        except Exception as exc:  # exporter, quantiser or runtime missing a feature: stay correct
            if self.mode == "onnxruntime-int8":
                _warn_once(f"int8:{type(exc).__name__}", "int8 quantisation failed (%s: %s); using float32 "
                           "ONNX Runtime", type(exc).__name__, exc)
                self._set_mode("onnxruntime")
                return self._session_or_fallback(size)
            _warn_once(f"ort:{type(exc).__name__}", "ONNX Runtime unavailable (%s: %s); using PyTorch",
                       type(exc).__name__, exc)
            self._set_mode("channels_last")
            return None
        self._sessions[size] = session
        return session

    def cache_path(self, size: tuple[int, int]) -> Path | None:
        """The cache entry for inputs of spatial ``size`` in the current mode (None without a cache)."""
        if self.cache is None:
            return None
        import onnxruntime as ort

        model = self._exported_model()
        if id(model) not in self._digests:
            self._digests[id(model)] = weights_digest(model)
        extra = (f"-cal{CALIBRATION_VERSION}{self.calibration_key}-w{int8_weight_bits()}"
                 if self.mode == "onnxruntime-int8" else "")
        name = (f"{self._digests[id(model)]}-{size[0]}x{size[1]}-{self.mode}{extra}-x{EXPORT_VERSION}"
                f"-ort{ort.__version__}"
                f"-torch{torch.__version__.split('+')[0]}.onnx")
        return self.cache / "onnx" / name

    def _session(self, size: tuple[int, int]) -> list:
        """Load the graph for ``size`` from the cache, else export (and quantise) it and cache it; returns
        one session of it, or two that share ``threads`` (1 + 1 on 2 cores, 2 + 1 on 3)."""
        import time

        import onnxruntime as ort

        start = time.perf_counter()
        path = self.cache_path(size)
        body = read_cache_entry(path) if path is not None else None
        how = "cache"
        if body is None:
            if path is not None and path.exists():
                _log.warning("model cache entry %s is damaged; rebuilding it", path)
            body = self._export(size)
            how = "export"
            if self.mode == "onnxruntime-int8":
                body = self._quantise(body, size)
                how = "export+int8"
            if path is not None:
                write_cache_entry(path, body)
        shares = [self.threads] if self.threads == 1 else [self.threads - self.threads // 2, self.threads // 2]
        sessions = []
        for threads in shares:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # no busy-waiting between ops: on a core shared with other programs (the window, a browser)
            # spinning threads measured 1.35x slower on 2 threads (docs/engine_bench.md)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3  # errors only: no notices about unused initialisers on stderr
            sessions.append(ort.InferenceSession(body, options, providers=["CPUExecutionProvider"]))
        self.build_seconds[size] = (how, time.perf_counter() - start)
        return sessions

    def _exported_model(self) -> nn.Module:
        """The network the graph of the current mode is made from: ``int8_model`` for the int8 graph
        when there is one, else the model."""
        return self.int8_model if self.mode == "onnxruntime-int8" and self.int8_model is not None else self.model

    def _export(self, size: tuple[int, int]) -> bytes:
        """ONNX bytes of the float32 network of the current mode (:meth:`_exported_model`) for
        (B, C, *size) inputs, batch size free."""
        model = self._exported_model()
        channels = _input_channels(model)
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False):  # tracing needs normal tensors
            warnings.simplefilter("ignore")  # tracer and exporter-deprecation notices
            example = torch.zeros((1, channels) + tuple(size))
            torch.onnx.export(model, (example,), buffer, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17,
                              dynamo=False)
        return fold_pads(buffer.getvalue())

    def _quantise(self, body: bytes, size: tuple[int, int]) -> bytes:
        """Static int8 (QDQ) version of ONNX bytes, calibrated on ``calibration(size)``.

        Weights int8 per output channel, 8 bits on CPUs with VNNI, else 7 (:func:`int8_weight_bits`);
        activations uint8 from min/max ranges.
        """
        import tempfile

        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)

        inputs = self.calibration(size[0])
        inputs = inputs.numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        inputs = inputs.astype(np.float32, copy=False)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{"x": inputs[i:i + 16]} for i in range(0, len(inputs), 16)])

            def get_next(self):
                return next(self.batches, None)

        with tempfile.TemporaryDirectory(prefix="bpr-studio-int8-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(body)
            quant_log = logging.getLogger()  # the quantiser logs per-tensor notices on the root logger
            level = quant_log.level
            quant_log.setLevel(logging.ERROR)
            try:
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                reduce_range=int8_weight_bits() == 7, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8)
            finally:
                quant_log.setLevel(level)
            return dst.read_bytes()


def fold_pads(body: bytes) -> bytes:
    """ONNX bytes with each zero Pad of the spatial axes that feeds one Conv folded into that Conv's
    own (possibly asymmetric) pads: TF-"SAME" stride-2 convolutions export as Pad + Conv, and the
    separate Pad cost 16% of an int8 forward pass of the lite0 refiner. Constants are folded first
    (ONNX Runtime's basic level, standard ONNX operators only) so the paddings are known; the
    paddings no node reads any more are dropped (ONNX Runtime warns about each on every start)."""
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory(prefix="bpr-studio-onnx-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(body, options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.input[1] not in inits or any(a.name == "mode" and a.s != b"constant"
                                                                       for a in pad.attribute):
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = inits.get(pad.input[2])
            if value is None or numpy_helper.to_array(value).any():
                continue
        pads = numpy_helper.to_array(inits[pad.input[1]]).tolist()  # [n0, c0, h0, w0, n1, c1, h1, w1]
        after = readers.get(pad.output[0], [])
        if (len(pads) != 8 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0 or len(after) != 1
                or pad.output[0] in outputs
                or after[0].op_type != "Conv" or after[0].input[0] != pad.output[0] or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET")
                                                     for a in after[0].attribute)):
            continue
        conv = after[0]
        own = next((a for a in conv.attribute if a.name == "pads"), None)
        base = list(own.ints) if own is not None else [0, 0, 0, 0]  # [h0, w0, h1, w1]
        merged = [base[0] + pads[2], base[1] + pads[3], base[2] + pads[6], base[3] + pads[7]]
        if own is not None:
            conv.attribute.remove(own)
        conv.attribute.append(onnx.helper.make_attribute("pads", merged))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    read = {name for node in graph.node for name in node.input} | outputs
    for unused in [t for t in graph.initializer if t.name not in read]:  # the folded Pads' paddings
        graph.initializer.remove(unused)
    return model.SerializeToString()


def _input_channels(model: nn.Module) -> int:
    """Input channels: ``model.in_channels`` if the model says, else 4 (RGB + coarse mask)."""
    channels = getattr(model, "in_channels", None)
    return channels if isinstance(channels, int) else 4


def fast_inference(model: nn.Module, device: str | torch.device = "cpu", mode: str = "auto",
                   input_size: int | None = None, **kwargs) -> FastInference:
    """The fastest way to run ``model`` on ``device`` that keeps its masks; see :class:`FastInference`
    (``kwargs``: calibration, calibration_key, cache, threads, int8_state)."""
    return FastInference(model, input_size=input_size, device=device, mode=mode, **kwargs)
