"""CLIP-family (CLIP, SigLIP) embeddings from an ONNX export (``python -m image_search
export``), without torch.

Same interface and outputs as ``ClipEmbedder``: float32, L2-normalised, shape (n, dim). Only
onnxruntime, tokenizers, numpy and PIL are imported, which is what keeps torch out of the Lambda
image and a second or more off every cold start.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from image_search.errors import ModelLoadError
from image_search.model import source as model_source
from image_search.model.onnx_manifest import ExportManifest, find_export, read_manifest
from image_search.model.preprocess import Preprocessing, read_preprocessing
from image_search.model.text_clean import cleaner
from image_search.model.vectors import Vectors, normalise

LOG = logging.getLogger(__name__)


def usable_cores() -> int:
    """CPUs this process may run on (a container's or Lambda's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxEmbedder:
    """An exported CLIP model in two ONNX Runtime sessions, loaded once."""

    runtime = "onnx"

    def __init__(
        self, *, source: str, batch_size: int = 32, cache_dir: Path, threads: int = 0
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self._cache_dir = cache_dir
        # Each call gets ``threads`` (0 = one per core) and only as many calls run at once as
        # leave no core shared: more would oversubscribe the cores, as the torch embedder's lock
        # also prevents. A Lambda instance serves one request at a time, so latency decides:
        # every core on each call gave a 62 ms image p50 against 105 ms with one thread (ViT-B/32,
        # 2 cores); with 4 callers on 2 busy cores (bench.sections.runtimes) it also gave the most
        # images/s (5.7 against 4.9 for one thread per call, two calls at once).
        self.threads = threads or usable_cores()
        self._runs = threading.BoundedSemaphore(max(1, usable_cores() // self.threads))
        # One lock a tower, so texts are answered while the image tower is still loading.
        self._text_lock = threading.Lock()
        self._vision_lock = threading.Lock()
        # Apart from the sessions' locks: the service checks a build's model (identity, dim) from
        # the index's thread while the sessions may still be loading.
        self._export_lock = threading.Lock()
        self._export: tuple[Path, ExportManifest] | None = None
        self._text: _TextTower | None = None
        self._vision: _VisionTower | None = None

    def load(self) -> OnnxEmbedder:
        """Open both towers (idempotent, thread-safe); ``ModelLoadError`` says how to fix it."""
        self.load_text()
        self._vision_tower()
        return self

    def load_text(self) -> OnnxEmbedder:
        """Open the text tower only: enough to answer text searches (a cold start's first job)."""
        self._text_tower()
        return self

    @property
    def image_ready(self) -> bool:
        return self._vision is not None

    def _find(self) -> tuple[Path, ExportManifest]:
        """The export's directory and manifest: cheap, no session is opened (see ``identity``)."""
        with self._export_lock:
            if self._export is None:
                path = Path(model_source.resolve(self.source, cache_dir=self._cache_dir))
                directory = find_export(path) if path.is_dir() else None
                if directory is None:
                    raise ModelLoadError(
                        f"{self.source!r} is not an ONNX export (no export.json in it or in "
                        "onnx/): create one with `python -m image_search export --model M "
                        "--output DIR`"
                    )
                self._export = directory, read_manifest(directory)
            return self._export

    def _text_tower(self) -> _TextTower:
        with self._text_lock:
            if self._text is None:
                directory, manifest = self._find()
                # ONNX Runtime opens the session with the GIL released while the tokenizer's
                # JSON is parsed here with it held: a cold start pays the longer, not the sum
                # (0.4-0.6 s and 0.13 s for ViT-B/32).
                with ThreadPoolExecutor(1, thread_name_prefix="image-search-text-session") as pool:
                    opening = pool.submit(self._session, directory, manifest.files.text)
                    try:
                        from tokenizers import Tokenizer

                        tokenizer = Tokenizer.from_file(str(directory / manifest.files.tokenizer))
                    except Exception as exc:  # tokenizers raises its own exception types
                        raise ModelLoadError(
                            f"cannot load the tokenizer in {directory}: {exc}"
                        ) from exc
                    session = opening.result()
                # The manifest, not tokenizer.json, says how to truncate and pad (the family's
                # rule: CLIP to the longest text, SigLIP to a fixed length).
                tokenizer.enable_truncation(max_length=manifest.max_text_tokens)
                tokenizer.enable_padding(
                    pad_id=manifest.pad_id,
                    pad_token=manifest.pad_token,
                    length=manifest.pad_to,  # None: the batch's longest text (CLIP)
                    direction=manifest.pad_side,
                )
                inputs = tuple(i.name for i in session.get_inputs())
                try:
                    clean = cleaner(manifest.text_clean)
                except ImportError as exc:  # ftfy: requirements-lambda.txt has it
                    raise ModelLoadError(f"cannot clean texts for {directory}: {exc}") from exc
                tower = _TextTower(session, tokenizer, inputs, clean)
                self._check_text(tower, directory, manifest)
                self._text = tower
                self._log_loaded("text", directory, manifest)
            return self._text

    def _vision_tower(self) -> _VisionTower:
        with self._vision_lock:
            if self._vision is None:
                directory, manifest = self._find()
                session = self._session(directory, manifest.files.vision)
                try:
                    spec = read_preprocessing(directory / manifest.files.preprocessor)
                except (OSError, ValueError) as exc:
                    raise ModelLoadError(
                        f"cannot read the preprocessing in {directory}: {exc}"
                    ) from exc
                if spec.output_size != (manifest.image_size, manifest.image_size):
                    raise ModelLoadError(
                        f"the export in {directory} preprocesses to {spec.output_size} pixels "
                        f"but its vision model takes {manifest.image_size}"
                    )
                _check_width(session, manifest, directory, tower="vision")
                self._vision = _VisionTower(session, spec)
                self._log_loaded("image", directory, manifest)
            return self._vision

    def _session(self, directory: Path, name: str) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError(f"the ONNX runtime is not installed: {exc}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # A spinning pool keeps cores busy after each run: it starved the image decoding and
        # FAISS work beside it in measurement, and in Lambda it is billed idle time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(directory / name), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load the ONNX export in {directory}: {exc}") from exc

    def _check_text(self, tower: _TextTower, directory: Path, manifest: ExportManifest) -> None:
        """The manifest against the text graph itself: a text of ``max_text_tokens`` tokens, the
        longest a query can become, must run and give ``dim`` numbers. A manifest that promises
        more tokens than the model's positions, or another width, would otherwise load and then
        fail long queries (500s) or publish an index this deployment refuses."""
        (longest,) = tower.encode(["a " * (4 * manifest.max_text_tokens)])
        try:
            (features,) = tower.session.run(None, tower.feeds([longest]))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(
                f"the text model in {directory} does not take {len(longest.ids)} tokens "
                f"(export.json max_text_tokens {manifest.max_text_tokens}): {exc}"
            ) from exc
        _check_dim(int(np.shape(features)[-1]), manifest, directory, tower="text")

    def _log_loaded(self, tower: str, directory: Path, manifest: ExportManifest) -> None:
        LOG.info(
            "loaded the %s tower of the ONNX export of %s from %s (%s, dim %d, %d threads)",
            tower,
            manifest.source,
            directory,
            manifest.precision,
            manifest.dim,
            self.threads,
        )

    @property
    def identity(self) -> str:
        """The model the export was made from (and its precision when not fp32): what builds
        record and the service compares."""
        return self._find()[1].identity

    @property
    def precision(self) -> str:
        return self._find()[1].precision

    @property
    def dim(self) -> int:
        return self._find()[1].dim

    @property
    def max_text_tokens(self) -> int:
        return self._find()[1].max_text_tokens

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        tower = self._text_tower()
        parts = []
        for start in range(0, len(texts), self.batch_size):
            encodings = tower.encode(texts[start : start + self.batch_size])
            parts.append(self._run(tower.session, tower.feeds(encodings)))
        return self._stack(parts)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        tower = self._vision_tower()
        parts = []
        for start in range(0, len(images), self.batch_size):
            pixels = tower.spec.pixels(images[start : start + self.batch_size])
            parts.append(self._run(tower.session, {"pixel_values": pixels}))
        return self._stack(parts)

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> Vectors:
        with self._runs:
            (features,) = session.run(None, feeds)
        return normalise(features)

    def _stack(self, parts: list[Vectors]) -> Vectors:
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts)


def _check_width(session: Any, manifest: ExportManifest, directory: Path, *, tower: str) -> None:
    """The graph's declared output width against the manifest's ``dim`` (when it is static)."""
    width = session.get_outputs()[0].shape[-1]
    if isinstance(width, int):
        _check_dim(width, manifest, directory, tower=tower)


def _check_dim(width: int, manifest: ExportManifest, directory: Path, *, tower: str) -> None:
    if width != manifest.dim:
        raise ModelLoadError(
            f"the {tower} model in {directory} gives {width}-d vectors but export.json says "
            f"dim {manifest.dim}: export the model again"
        )


@dataclass(frozen=True, slots=True)
class _TextTower:
    session: Any
    tokenizer: Any
    inputs: tuple[str, ...]
    clean: Callable[[str], str] | None  # the family's cleaning before the tokenizer (open_clip)

    def encode(self, texts: Sequence[str]) -> list[Any]:
        cleaned = [self.clean(t) for t in texts] if self.clean else list(texts)
        return list(self.tokenizer.encode_batch(cleaned))

    def feeds(self, encodings: Sequence[Any]) -> dict[str, np.ndarray]:
        """The graph's inputs for tokenised texts (SigLIP's text tower takes no mask)."""
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        return {name: feeds[name] for name in self.inputs}


@dataclass(frozen=True, slots=True)
class _VisionTower:
    session: Any
    spec: Preprocessing
