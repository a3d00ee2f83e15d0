"""The web page in Debian's headless Chromium: upload a photo, the labels and the reconstruction appear."""
from __future__ import annotations

import pytest

from tests.lomar_serve.photos import photo_bytes
from tests.lomar_serve.processes import E2E_LABELS

pytestmark = pytest.mark.e2e


def test_upload_shows_labels_and_reconstruction(browser, gateway, tmp_path, artifacts_dir, reference_meta):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(photo_bytes("chelsea"))
    browser.get(gateway.url + "/")
    wait = WebDriverWait(browser, 90)
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "ready"))
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".labels li.label")) == 5)
    labels = [item.text for item in browser.find_elements(By.CSS_SELECTOR, ".labels li.label")]
    assert all(any(text.startswith(name) for name in E2E_LABELS) and "%" in text for text in labels), labels
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "img.strip").is_displayed())
    # Shown is not yet decoded: wait for the strip's pixels before reading its size.
    natural_width = "const img = document.querySelector('img.strip'); return img.complete ? img.naturalWidth : 0"
    wait.until(lambda d: d.execute_script(natural_width) > 0)
    assert browser.execute_script(natural_width) == 4 * 224 + 3 * 4
    dimensions = f"{reference_meta['embed_dim']} dimensions"
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".embedding .dim"), dimensions))
    # Moving the mask-ratio slider asks for a new reconstruction.
    browser.execute_script("const s = document.getElementById('mask-ratio'); s.value = '0.5';"
                           "s.dispatchEvent(new Event('input'));")
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".recon-status"), "mask ratio 0.5"))
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")
    browser.save_screenshot(str(artifacts_dir / "web_page.png"))


def test_docs_page_tries_classify_with_a_photo(browser, gateway, tmp_path, artifacts_dir):
    """/docs (Swagger UI served by the gateway, offline): "Try it out" on POST /v1/classify with a real file."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(photo_bytes("chelsea"))
    browser.get(gateway.url + "/docs")
    wait = WebDriverWait(browser, 90)
    operation = wait.until(lambda d: d.find_element(By.ID, "operations-inference-classify_v1_classify_post"))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda d: operation.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    content_type = operation.find_element(By.CSS_SELECTOR, ".opblock-section-request-body select.content-type")
    assert content_type.get_attribute("value") == "multipart/form-data"
    wait.until(lambda d: operation.find_element(By.CSS_SELECTOR, ".opblock-section-request-body input[type=file]")
               ).send_keys(str(photo))
    operation.find_element(By.CSS_SELECTOR, ".execute").click()
    body = wait.until(lambda d: operation.find_element(By.CSS_SELECTOR,
                                                       ".live-responses-table .response-col_description pre"))
    wait.until(lambda d: '"labels"' in body.text)
    status = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status").text
    labels = json.loads(body.text)["results"][0]["labels"]
    assert status.split()[0] == "200" and len(labels) == 5 and all(item["label"] in E2E_LABELS for item in labels), body.text
    browser.save_screenshot(str(artifacts_dir / "docs_try_it_out.png"))
