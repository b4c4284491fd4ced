"""What the sections of one run share, each part made the first time a section asks for it: one
moto S3 server, the benchmark model, both runtimes' embedders and the published search indexes."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.fixtures.publish import Published
    from bench.report.stats import Report
    from bench.sections.sizes import Sizes


class Shared:
    """Used as a context manager: leaving it stops the S3 server it started."""

    def __init__(self, report: Report, *, sizes: Sizes, work: Path) -> None:
        self.report = report
        self.sizes = sizes
        self.work = work
        self._stack = ExitStack()
        self._s3_started = False

    def __enter__(self) -> Shared:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def s3(self) -> None:
        """Point boto3 at the run's moto server (AWS_ENDPOINT_URL_S3), started on first use."""
        from bench.fixtures.s3server import s3_server

        if not self._s3_started:
            self._stack.enter_context(s3_server())
            self._s3_started = True

    @cached_property
    def model(self) -> Path:
        """The benchmark model's folder (ViT-B/32 with random weights; 2 layers for --smoke)."""
        from bench.fixtures.model import benchmark_model

        return benchmark_model(tiny=self.sizes.tiny_model)

    @cached_property
    def torch(self) -> Any:
        """The model loaded through the product's ``ClipEmbedder``."""
        from image_search.model.torch_clip import ClipEmbedder

        return ClipEmbedder(source=str(self.model), cache_dir=self.work / "models").load()

    @cached_property
    def embedders(self) -> dict[str, Any]:
        """Both runtimes on the same model: torch and its ONNX export."""
        from bench.fixtures.model import exported
        from image_search.model.onnx_clip import OnnxEmbedder

        onnx = OnnxEmbedder(source=str(exported(self.model)), cache_dir=self.work / "models")
        return {"torch": self.torch, "onnx": onnx.load()}

    @cached_property
    def published(self) -> list[Published]:
        """One synthetic build per size in ``sizes.search_indexes``, under the model's identity."""
        from bench.fixtures.publish import publish_synthetic
        from image_search.storage import s3

        self.s3()
        client = s3.make_client()
        source = self.torch.source  # the identity both runtimes serve
        return [publish_synthetic(client, count=n, model=source) for n in self.sizes.search_indexes]
