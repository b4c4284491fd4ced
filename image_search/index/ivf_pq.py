"""ivf-pq: an IVF-PQ index finds candidates, 8-bit codes of every vector re-rank them."""

from __future__ import annotations

import io

import faiss
import numpy as np

from image_search.index import rerank
from image_search.index.kinds import FaissIndex, scan_lists_in_parallel
from image_search.index.search_index import Allowed, Hits, Parts, allowed_ids, npy_parts, top
from image_search.model.vectors import Vectors

# ivf-pq: 64-byte PQ codes (8 dimensions a byte at 512-d) find candidates; this many per result
# are re-ranked with 8-bit codes (index/rerank.py). Measured on bench/'s clustered vectors
# (docs/scale.md): the PQ order is what loses recall as N grows. 10 / 20 / 40 candidates a result
# give recall@10 0.897 / 0.951 / 0.969 at 1M, and 10 / 20 / 40 / 80 give 0.813 / 0.924 / 0.964 /
# 0.971 at 3M (the 8-bit codes' ceiling), whatever the nprobe. At 10M the probed lists matter
# too: nprobe 8 / 12 / 16 give 0.940 / 0.947 / 0.952 at 5.9 / 8.1 / 9.2 ms a query on 2 cores;
# 12 keeps the 10 ms target with a margin.
PQ_NPROBE = 12
RERANK_FACTOR = 80
# Exact scoring decodes this many rows' codes at a time (8 MB of floats at 512-d).
SCORE_CHUNK = 4096
# The names of the files it publishes beside its FAISS file (see sidecars()).
LAYOUT = "rerank_layout"
CODES = "rerank_codes"


class IvfPqIndex(FaissIndex):
    """Candidates from the IVF-PQ index, re-ranked (and reconstructed) from the 8-bit codes."""

    kind = "ivf-pq"
    approximate = True

    def __init__(self, base: faiss.Index, codes: rerank.Rerank) -> None:
        super().__init__(scan_lists_in_parallel(base))
        self.rerank = codes

    def _search(
        self, query: Vectors, *, k: int, available: int, chosen: faiss.IDSelector | None
    ) -> Hits:
        wanted = min(available, k * RERANK_FACTOR)
        params = faiss.SearchParametersIVF(sel=chosen, nprobe=PQ_NPROBE)
        _, ids = self.faiss.search(query, wanted, params=params)
        rows = ids[0][ids[0] >= 0]
        return top(rows, self.rerank.scores(rows, query), k)

    def _exact(self, query: Vectors, *, k: int, allowed: Allowed) -> Hits:
        """Every allowed row scored from its re-rank codes, ``SCORE_CHUNK`` rows at a time (a
        bounded buffer however many are scored)."""
        ids = allowed_ids(allowed, self.ntotal)
        scores = np.empty(len(ids), dtype=np.float32)
        for start in range(0, len(ids), SCORE_CHUNK):
            chunk = ids[start : start + SCORE_CHUNK]
            scores[start : start + len(chunk)] = self.rerank.scores(chunk, query)
        return top(ids, scores, k)

    def vector(self, row: int) -> Vectors:
        return self.rerank.vectors(np.array([row]))

    def coarse_quantizer(self) -> faiss.Index | None:
        return faiss.extract_index_ivf(self.faiss).quantizer

    def sidecars(self) -> dict[str, Parts]:
        """The codes as an ``.npy`` file (header, then the rows in list order) and the layout
        that says where each row's code starts in that file."""
        codes = npy_parts(self.rerank.codes)
        layout = io.BytesIO()
        rerank.save_layout(self.rerank.layout, layout, codes_offset=len(codes[0]))
        return {CODES: codes, LAYOUT: [layout.getvalue()]}
