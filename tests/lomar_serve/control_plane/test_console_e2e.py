"""The console in Debian's headless Chromium against a real `lomar serve` (Triton, gateway, control plane, worker):
log in, submit a small job from the form, watch its curves gain points while it trains, read its evaluation report,
compare it with the serving version, deploy it, classify with it from the gateway's page (model picker), roll back,
create and revoke an API key, add a folder to a collection with an ingest job, log out. A screenshot of each page goes to test-artifacts/console/ (the path is
printed); the admin token appears in no URL the browser asked for, no page and no log."""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.lomar_serve.processes import ServeStack
from tests.lomar_serve.tiny_models import (TINY_MODEL, TINY_OPTIONS, export_tiny, export_tiny_reconstruction,
                                           synthetic_set)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
TOKEN = "console-e2e-token-4b9d1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "lomar_classifier"
CLASSES = ["class_000_circle", "class_001_square", "class_002_triangle"]
OTHER, OTHER_CLASSES = "other_classifier", ["left", "right"]  # a second classifier for the gateway's picker
FORM_OPTIONS = ("image_size", "batch_size", "blr", "warmup_epochs", "num_workers")  # typed into their own fields
EPOCHS = 8  # with 48 images a class, 144 steps: seconds of training, over which the page polls several times


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shapes/: 3 classes; two validation images swapped between the circle and square folders, so that even a
    perfect model makes mistakes for the report to show."""
    root = tmp_path_factory.mktemp("console_data")
    synthetic_set(root / "shapes", classes=3, per_class=48, val_per_class=6, seed=3)
    val = root / "shapes" / "val"
    circle, square = (sorted((val / name).iterdir())[0] for name in CLASSES[:2])
    circle.rename(val / CLASSES[1] / f"swapped_{circle.name}")
    square.rename(val / CLASSES[0] / f"swapped_{square.name}")
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[ServeStack]:
    work = tmp_path_factory.mktemp("console_e2e")
    assert export_tiny(work / "repo", work, CLASSES, seed=1) == 1
    export_tiny(work / "repo", work, OTHER_CLASSES, seed=2, name=OTHER)
    export_tiny_reconstruction(work / "repo", work)
    stack = ServeStack(work, {"LOMAR_ADMIN_TOKEN": TOKEN, "LOMAR_DATA_ROOTS": str(data_root),
                              "LOMAR_JOBS_DIR": str(work / "jobs"), "LOMAR_DEPLOY_DRAIN_S": "1"})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


class Visit:
    """The browser's walk: waits, screenshots (each page's source checked for the token) and every URL asked."""

    def __init__(self, browser, folder: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait
        self.browser, self.folder, self.urls = browser, folder, []
        self.wait = WebDriverWait(browser, 120)

    def open(self, url: str) -> None:
        self.collect()
        self.browser.get(url)
        self.browser.execute_script("performance.setResourceTimingBufferSize(100000)")

    def collect(self) -> None:
        """The page's URL and every URL it fetched so far (scripts, API calls, thumbnails)."""
        self.urls.append(self.browser.current_url)
        self.urls += self.browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")

    def css(self, selector: str, root=None):
        from selenium.webdriver.common.by import By
        return (root or self.browser).find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str, root=None) -> list:
        from selenium.webdriver.common.by import By
        return (root or self.browser).find_elements(By.CSS_SELECTOR, selector)

    def until(self, condition: Callable[[], object], what: str, timeout_s: float = 120):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.browser, timeout_s, poll_frequency=0.2).until(lambda _: condition(), what)

    def text(self, selector: str) -> str:
        found = self.all(selector)
        return found[0].text if found else ""

    def shot(self, name: str) -> None:
        """The whole page (the window stretched to its height), and its source checked for the token."""
        assert TOKEN not in self.browser.page_source, name
        height = self.browser.execute_script("return document.documentElement.scrollHeight")
        self.browser.set_window_size(1200, max(900, min(height + 140, 6000)))
        self.browser.save_screenshot(str(self.folder / f"{name}.png"))
        self.browser.set_window_size(1200, 900)

    def click(self, find: Callable[[], object], what: str) -> None:
        """Click what `find` returns, found again if the page redrew it meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException

        def clicked() -> bool:
            try:
                element = find()
                if element is None:
                    return False
                element.click()
                return True
            except StaleElementReferenceException:
                return False
        self.until(clicked, what)

    def confirm(self) -> None:
        self.until(lambda: self.css("#confirm").get_attribute("open") is not None, "the confirmation dialog")
        self.css("#confirm-ok").click()


def job_state(stack: ServeStack, job_id: str) -> dict:
    return httpx.get(f"{stack.admin_url}/v1/admin/jobs/{job_id}", headers=AUTH, timeout=30).json()


def test_console_walk(browser, stack: ServeStack, data_root: Path, artifacts_dir: Path) -> None:
    from selenium.webdriver.support.ui import Select

    folder = artifacts_dir / "console"
    folder.mkdir(exist_ok=True)
    print(f"console screenshots: {folder}")
    visit = Visit(browser, folder)

    # Log in: a wrong token is refused with the server's message, the right one opens the console.
    visit.open(stack.admin_url + "/")
    visit.until(lambda: visit.css("#login").is_displayed(), "the login form")
    visit.css("#token").send_keys("not-the-token")
    visit.css("#login button").click()
    visit.until(lambda: "not valid" in visit.text("#login-message"), "the refusal")
    visit.shot("01_login_refused")
    visit.css("#token").send_keys(TOKEN)
    visit.css("#login button").click()
    visit.until(lambda: visit.css("#nav").is_displayed(), "the console")
    assert visit.css("#token").get_attribute("value") == "" and browser.execute_script("return document.cookie") == ""

    browser.get(stack.admin_url + "/#/models")
    visit.until(lambda: len(visit.all("table.models tbody tr")) == 3, "the models")
    visit.shot("02_models")
    browser.get(stack.admin_url + f"/#/models/{NAME}")
    visit.until(lambda: visit.all("table.versions tr.current"), "the model's versions")
    assert "3 classes" in visit.text("table.versions") and visit.text("td.serving, strong.serving") == "1"
    visit.shot("03_model")

    # Submit a small job from the form.
    browser.get(stack.admin_url + "/#/jobs")
    form = visit.until(lambda: visit.css("form.job-form"), "the job form")
    visit.css("[name=data_dir]", form).send_keys("shapes")
    visit.until(lambda: "3 classes" in visit.text(".job-form .classes"), "the data set's classes")
    Select(visit.css("[name=model]", form)).select_by_value(TINY_MODEL["model"])
    visit.css("[name=model_options]", form).send_keys(" ".join(f"{k}={v}" for k, v in
                                                                TINY_MODEL["model_options"].items()))
    epochs = visit.css("[name=epochs]", form)
    epochs.clear()
    epochs.send_keys(str(EPOCHS))
    for name in FORM_OPTIONS:
        visit.css(f"[name='option.{name}']", form).send_keys(str(TINY_OPTIONS[name]))
    Select(visit.css("[name='option.device']", form)).select_by_value(TINY_OPTIONS["device"])
    more = {k: v for k, v in TINY_OPTIONS.items() if k not in (*FORM_OPTIONS, "device")}
    visit.css("[name=more]", form).send_keys(" ".join(f"{k}={v}" for k, v in more.items()))
    visit.shot("04_job_form")
    visit.css("button[type=submit]", form).click()
    visit.until(lambda: re.fullmatch(r".*#/jobs/[a-f0-9]+", browser.current_url), "the job's page")
    job_id = browser.current_url.rsplit("/", 1)[1]
    assert job_state(stack, job_id)["params"]["epochs"] == EPOCHS

    # Its curves gain points while it runs.
    seen_running: list[int] = []
    deadline = time.monotonic() + 600
    while (job := job_state(stack, job_id))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        points = int(visit.css(".charts canvas").get_attribute("data-points") or 0)
        if job["state"] == "running" and points and (not seen_running or points > seen_running[-1]):
            seen_running.append(points)
            if len(seen_running) == 2:
                visit.shot("05_job_running")
        time.sleep(0.3)
    assert job["state"] == "succeeded" and job["model_version"] == "2", job
    assert len(seen_running) >= 2, f"the loss curve never grew while the job ran: {seen_running}"
    logged = httpx.get(f"{stack.admin_url}/v1/admin/jobs/{job_id}/metrics", headers=AUTH, timeout=30).json()
    assert len(logged["val"]) == EPOCHS and logged["train"]
    loss, accuracy = (len(logged["train"]) + len(logged["epochs"]) + len(logged["val"]), 2 * len(logged["val"]))
    visit.until(lambda: [int(c.get_attribute("data-points")) for c in visit.all(".charts canvas")[:2]]
                == [loss, accuracy], "every logged point drawn")
    visit.until(lambda: "succeeded" in visit.text("pre.log") or "== stage verify ==" in visit.text("pre.log"),
                "the log's end")

    # Its evaluation report: the confusion matrix and the worst mistakes, with their thumbnails.
    visit.until(lambda: visit.all(".evaluation table.confusion"), "the confusion matrix")
    assert len(visit.all(".evaluation .report table.confusion tbody tr")) == len(CLASSES)
    assert len(visit.all(".evaluation .report table.classes tbody tr")) == len(CLASSES)
    visit.until(lambda: len(visit.all(".evaluation .report .mistakes img[src^='blob:']")) >= 2, "the mistakes")
    visit.shot("06_job_report")

    # Compared with the serving version, side by side.
    visit.css(".evaluation .compare button").click()
    visit.until(lambda: visit.all(".side-by-side .baseline .headline"), "the comparison")
    assert "serving: version 1" in visit.text(".side-by-side")
    assert "this job: version 2" in visit.text(".side-by-side")
    visit.until(lambda: visit.all(".disagreements img[src^='blob:']"), "the images they disagree on")
    visit.shot("07_job_compare")

    # Deployed from the job's page.
    visit.click(lambda: next((b for b in visit.all(".job-summary button") if b.text == "deploy version 2"), None),
                "the deploy button")
    visit.confirm()
    visit.until(lambda: "serves version 2" in visit.text(".outcome.ok"), "the deploy's answer", 300)
    answer = visit.text(".outcome.ok")
    assert "previous: 1" in answer and "changed: true" in answer and re.search(r"\d+\.\d s", answer), answer
    visit.until(lambda: "version 2 serves" in visit.text(".job-summary"), "the job's version marked serving")
    visit.shot("08_job_deployed")
    visit.collect()

    # The gateway's page: the model picker, the chosen model's classes, a classification by version 2.
    image = next((data_root / "shapes" / "val" / CLASSES[2]).iterdir())
    visit.open(stack.url + "/")
    picker = visit.until(lambda: visit.css("#classifier"), "the classifier picker")
    visit.until(lambda: {o.text for o in visit.all("option", picker)} == {f"{NAME} v2", f"{OTHER} v1"},
                "both classifiers, the retrained one at version 2")
    assert Select(picker).first_selected_option.text == f"{NAME} v2"
    assert "knows only these 3 classes" in visit.text("#model-note")
    Select(picker).select_by_value(OTHER)
    visit.until(lambda: "knows only these 2 classes" in visit.text("#model-note"), "the other model's classes")
    assert "left, right" in visit.text("#model-note")
    visit.css("#file-input").send_keys(str(image))
    visit.until(lambda: f"{OTHER} v1" in visit.text(".card .by"), "a classification by the other model")
    assert {label.text.split("\n")[0] for label in visit.all(".labels li.label")} <= set(OTHER_CLASSES)
    Select(picker).select_by_value(NAME)
    visit.until(lambda: f"{NAME} v2" in visit.text(".card .by"), "a classification by version 2")
    labels = [label.text.split("\n")[0] for label in visit.all(".labels li.label")]
    assert labels and set(labels) <= set(CLASSES), labels
    visit.shot("09_gateway_page")

    # Rolled back from the model's page.
    visit.open(stack.admin_url + f"/#/models/{NAME}")
    visit.click(lambda: next((b for b in visit.all("button") if b.text == "roll back to version 1"), None),
                "the rollback button")
    visit.confirm()
    visit.until(lambda: "serves version 1" in visit.text(".outcome.ok"), "the rollback's answer", 300)
    assert "previous: 2" in visit.text(".outcome.ok")
    visit.until(lambda: [row.text.split()[-3:] for row in visit.all("table.history tbody tr")][:2]
                == [["rollback", "1", "2"], ["deploy", "2", "1"]], "the history")
    visit.shot("10_model_rolled_back")

    # API keys: created (shown once), revoked.
    browser.get(stack.admin_url + "/#/keys")
    visit.until(lambda: visit.all("form.key-form [name=name]"), "the key form")
    visit.css("form.key-form [name=name]").send_keys("console-e2e")
    visit.css("form.key-form button[type=submit]").click()
    visit.until(lambda: visit.all(".outcome.ok input.secret"), "the new key")
    key = visit.css(".outcome.ok input.secret").get_attribute("value")
    assert key.startswith("lmk_") and key not in browser.page_source  # shown in the field, not in the markup
    visit.until(lambda: visit.all("table.keys tbody tr"), "the keys")
    visit.shot("11_keys")
    visit.css("table.keys tbody tr button").click()
    visit.confirm()
    visit.until(lambda: visit.all("table.keys tr.revoked"), "the revoked key")

    # An ingest job from its form: a worker adds a folder to a new collection; its page shows the counts.
    images = sorted(path.relative_to(data_root / "shapes").as_posix() for path in (data_root / "shapes").rglob("*.png"))
    browser.get(stack.admin_url + "/#/jobs")
    form = visit.until(lambda: visit.css("form.ingest-form"), "the ingest form")
    visit.css("[name=data_dir]", form).send_keys("shapes")
    visit.css("[name=collection]", form).send_keys("shapes")
    visit.css("button[type=submit]", form).click()
    visit.until(lambda: re.fullmatch(r".*#/jobs/[a-f0-9]+", browser.current_url), "the ingest job's page")
    visit.until(lambda: f"{len(images)} of {len(images)}: added {len(images)}, skipped 0 (already in), failed 0"
                in visit.text(".job-summary"), "the ingest job's counts", 300)
    visit.until(lambda: "succeeded" in visit.text(".job-summary"), "the ingest job's end")
    assert "collection" in visit.text(".job-summary") and visit.css(".charts").find_element("xpath", "..").get_attribute(
        "hidden") is not None  # no training curves for an ingest
    visit.shot("12_ingest_job")
    listed = httpx.get(f"{stack.url}/v1/collections/shapes/images", params={"limit": 1000}, timeout=30).json()
    assert sorted(image["name"] for image in listed["images"]) == images
    browser.get(stack.admin_url + "/#/jobs")
    visit.until(lambda: "collection shapes" in visit.text("table.jobs"), "the ingest job in the list")

    visit.css("#logout").click()
    visit.until(lambda: visit.css("#login").is_displayed(), "the login form again")
    assert browser.execute_script("return sessionStorage.length") == 0
    visit.collect()

    assert visit.urls and not [url for url in visit.urls if TOKEN in url]
    assert any(f"/v1/admin/jobs/{job_id}/metrics?after=" in url for url in visit.urls)
    logs = [path.read_text(errors="replace") for path in (*stack.work.glob("serve-*.log"),
                                                          *(stack.work / "jobs").rglob("*.log"))]
    assert any(f"/v1/admin/jobs/{job_id}/metrics?after=" in log for log in logs)  # the access log is in them
    assert not [log for log in logs if TOKEN in log]
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
              and "/v1/admin/models - Failed to load resource" not in entry["message"]]  # the wrong token's 403
    assert not errors, errors
