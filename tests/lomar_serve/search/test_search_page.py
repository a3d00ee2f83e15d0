"""The similar-image page (/search) in Chromium against a live gateway (FAKE backend: a flat colour is found
again by its colour): names on hits and in the listing, paging, deleting an image and a collection. The same page
against the real model is in test_search_e2e.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lomar_serve.clients.gateway import LomarClient
from tests.lomar_serve.gateway.api.conftest import live_server  # noqa: F401  (a fixture)
from tests.lomar_serve.photos import encode

pytestmark = pytest.mark.e2e  # Chromium is a process
IMAGES = 30  # more than a page (24)


def colour(index: int) -> bytes:
    pixels = np.zeros((32, 32, 3), np.uint8) + np.array([(index * 53) % 256, (index * 97) % 256, (index * 191) % 256],
                                                          np.uint8)
    return encode(pixels, "PNG")


def test_names_paging_and_deletes(browser, live_server, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = live_server[0]
    with LomarClient(url) as client:
        client.create_collection("page")
        client.add_images("page", [colour(i) for i in range(IMAGES)], names=[f"colour {i:02d}.png" for i in range(IMAGES)])
    browser.get(url + "/search")
    wait = WebDriverWait(browser, 60)
    Select(browser.find_element(By.ID, "collection")).select_by_value("page")
    wait.until(lambda d: f"{IMAGES} images," in d.find_element(By.ID, "info").text)

    def tiles(grid: str) -> list[str]:
        return [element.text for element in browser.find_elements(By.CSS_SELECTOR, f"#{grid} .tile .name")]
    wait.until(lambda d: len(tiles("images")) == 24)
    assert tiles("images")[:2] == ["colour 00.png", "colour 01.png"]
    assert browser.find_element(By.ID, "page").text == f"1–24 of {IMAGES}"
    assert not browser.find_element(By.ID, "next").get_attribute("disabled")
    browser.find_element(By.ID, "next").click()
    wait.until(lambda d: tiles("images") == [f"colour {i:02d}.png" for i in range(24, IMAGES)])
    assert browser.find_element(By.ID, "page").text == f"25–{IMAGES} of {IMAGES}"
    assert browser.find_element(By.ID, "next").get_attribute("disabled")
    browser.find_element(By.ID, "previous").click()
    wait.until(lambda d: len(tiles("images")) == 24)

    query = tmp_path / "query.png"
    query.write_bytes(colour(5))
    browser.find_element(By.ID, "search-input").send_keys(str(query))
    wait.until(lambda d: len(tiles("hits")) == 8)
    assert tiles("hits")[0] == "colour 05.png"
    assert "score 1.000" in browser.find_element(By.CSS_SELECTOR, "#hits .tile .score").text

    browser.find_element(By.CSS_SELECTOR, "#hits .tile .delete").click()
    wait.until(expected_conditions.alert_is_present())
    assert "colour 05.png" in browser.switch_to.alert.text
    browser.switch_to.alert.accept()
    wait.until(lambda d: f"{IMAGES - 1} images," in d.find_element(By.ID, "info").text)
    wait.until(lambda d: "colour 05.png" not in tiles("hits") + tiles("images"))
    with LomarClient(url) as client:
        assert client.images("page", names=["colour 05.png"])["images"] == []
        assert client.collection("page")["count"] == IMAGES - 1

    browser.find_element(By.ID, "delete-collection").click()
    wait.until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    wait.until(lambda d: d.find_element(By.ID, "added").text == "deleted page")
    with LomarClient(url) as client:
        assert "page" not in [c["name"] for c in client.collections()["collections"]]
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")
