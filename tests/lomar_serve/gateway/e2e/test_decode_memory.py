"""32 x 40-megapixel RGBA PNGs (171 KB each on the wire, 160 MB each decoded) in one request while another
client sends small JPEGs: the gateway's memory stays within its stated budget, small requests are not stalled,
and the memory goes back afterwards.

Budget asserted (docs/serving.md, "Decode memory"): peak RSS under 1.5 GB, small-request p99 under 2 s, RSS back
within 150 MB of where it started. The gateway under test runs in front of the session's Triton with the
default settings (decode_budget_pixels, max_images 32). Figures: benchmarks/decode_memory.py.
"""
from __future__ import annotations

import pytest

from tests.lomar_serve.gateway.decode_load import run_decode_load
from tests.lomar_serve.processes import GatewayProcess, gateway_beside

pytestmark = pytest.mark.e2e
PEAK_RSS_MB = 1536
SMALL_P99_S = 2.0
RSS_RETURN_MB = 150


@pytest.fixture(scope="module")
def fresh_gateway(gateway: GatewayProcess, model_repository, tmp_path_factory: pytest.TempPathFactory):
    with gateway_beside(gateway, model_repository, tmp_path_factory.mktemp("decode_memory") / "gateway.log",
                        {"LOMAR_MAX_IMAGES": "32"}) as served:
        yield served


def test_32_huge_pngs_stay_in_the_memory_budget(fresh_gateway):
    load = run_decode_load(fresh_gateway.url, fresh_gateway.process.pid, count=32)
    assert load.big_status == 200, fresh_gateway.log_tail()
    assert load.small_count >= 5 and load.small_errors == 0, load
    assert load.rss_peak_mb < PEAK_RSS_MB, load
    assert load.small_p99_s < SMALL_P99_S, load
    assert load.rss_end_mb - load.rss_start_mb < RSS_RETURN_MB, load
