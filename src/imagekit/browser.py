"""The images at their point of use, in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromium-driver (nothing is downloaded). JupyterLab through the hub
(log in, a new notebook, a cell importing the model stack, an ipywidgets slider rendered) and the
Ray dashboard of a head and a worker. Every page is saved as a screenshot when a folder is given;
a page that does not come up is said with the browser's console errors."""
from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imagekit import wait
from imagekit.errors import PreconditionError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
STACK = "import sklearn, category_encoders, ray; print('imagekit-stack', sklearn.__version__, " \
        "category_encoders.__version__, ray.__version__)"
SLIDER = "import ipywidgets; ipywidgets.IntSlider(value=7, description='imagekit')"


@dataclass(frozen=True)
class Seen:
    """What the browser saw of one thing it checked (runtime.py names the checks)."""
    ok: bool
    detail: str
    seconds: float


def tools() -> tuple[str, str]:
    """The browser and its driver on PATH, or a PreconditionError saying how to install them."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    if browser is None or driver is None:
        raise PreconditionError("the browser checks need chromium and chromedriver on PATH",
                                hint="apt-get install chromium chromium-driver (Debian's; no browser is downloaded)")
    return browser, driver


class Page:
    """One headless chromium; `shot` saves the page, `errors` is what its console said."""

    def __init__(self, driver, screenshots: Path | None) -> None:
        self.driver, self.screenshots = driver, screenshots

    def shot(self, name: str) -> str:
        if self.screenshots is None:
            return ""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return f"; screenshot {path}"

    def errors(self) -> str:
        try:
            logs = [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]
        except Exception:  # noqa: BLE001 - a browser that has gone says nothing more
            return ""
        return ("; console: " + " | ".join(m[:200] for m in logs[-3:])) if logs else "; the console said nothing"

    def until(self, what: str, found: Callable[[], object], timeout: float, gone=None) -> object:
        """``found()``'s first true answer (an element not there yet, a page still loading: not yet);
        wait.NotReady names ``what`` and the page it was waited for on."""
        from selenium.common.exceptions import WebDriverException

        return wait.until(f"{what} (at {self.driver.current_url})", found, timeout, retry=(WebDriverException,),
                          gone=gone)

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def css(self, selector: str) -> list:
        return self.driver.find_elements("css selector", selector)


@contextmanager
def page(screenshots: Path | None) -> Iterator[Page]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = tools()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield Page(chrome, screenshots)
    finally:
        chrome.quit()


def jupyterlab(base: str, user: str, screenshots: Path | None) -> tuple[Seen, Seen]:
    """Log in to the hub at ``base``, land in JupyterLab on the user's server, open a new notebook,
    run the model stack's imports, then render a slider: (the stack, the slider)."""
    from selenium.webdriver.common.keys import Keys

    with page(screenshots) as p:
        started, d = time.monotonic(), p.driver
        try:
            d.get(f"{base}/hub/login")
            p.until("the hub's login form", lambda: p.css("#username_input"), 60)[0].send_keys(user)
            p.css("#password_input")[0].send_keys("imagekit")
            p.css("#login_submit")[0].click()
            p.until("JupyterLab's shell", lambda: f"/user/{user}/lab" in d.current_url and p.css(".jp-LabShell"), 120)
            p.until("the launcher's notebook card", lambda: p.css('.jp-LauncherCard[data-category="Notebook"]'),
                    60)[0].click()
            # a cell run before the new kernel is connected can be dropped: it stays unrun, "[ ]:"
            p.until("the notebook's kernel idle", lambda: "| Idle" in p.text(), 120)
            run_cell(p, Keys, STACK)
            out = p.until("the cell's output", lambda: next((t for t in outputs(p) if "imagekit-stack" in t
                                                             or "Error" in t), None), 180)
        except wait.NotReady as e:
            return Seen(False, f"{e.message}{p.shot('jupyterlab')}{p.errors()}", _since(started)), \
                Seen(False, "JupyterLab did not come up", 0.0)
        ok = out.startswith("imagekit-stack")
        lab = Seen(ok, (f"sklearn, category_encoders, ray: {out.split(' ', 1)[1]}" if ok else
                        f"the cell said: {out[-300:]}") + p.shot("jupyterlab"), _since(started))
        started = time.monotonic()
        try:  # until the cell answers: a slider, or the text a notebook without the widgets' front-end shows
            run_cell(p, Keys, SLIDER)
            p.until("the slider's output", lambda: p.css(".jp-OutputArea-output .widget-slider") or any(
                "IntSlider" in t for t in outputs(p)[1:]), 60)
        except wait.NotReady as e:
            return lab, Seen(False, f"{e.message}{p.errors()}{p.shot('ipywidgets')}", _since(started))
        if p.css(".jp-OutputArea-output .widget-slider"):
            return lab, Seen(True, "IntSlider in the DOM (.widget-slider)" + p.shot("ipywidgets"), _since(started))
        return lab, Seen(False, f"no slider in the page; the output reads {' '.join(outputs(p)[1:])[-200:]!r} (the "
                                f"widgets' front-end, jupyterlab_widgets, is not loaded){p.errors()}{p.shot('ipywidgets')}",
                         _since(started))


def run_cell(p: Page, keys, code: str) -> None:
    """Type ``code`` in the notebook's last cell and run it (Shift+Enter)."""
    editor = p.until("a notebook cell", lambda: p.css(".jp-NotebookPanel .jp-Cell .cm-content"), 60)[-1]
    editor.click()
    editor.send_keys(code)
    editor.send_keys(keys.SHIFT, keys.ENTER)


def outputs(p: Page) -> list[str]:
    return [o.text.strip() for o in p.css(".jp-NotebookPanel .jp-OutputArea-output")]


def ray_dashboard(base: str, screenshots: Path | None, nodes: int = 2, gone: Callable[[], str] | None = None) -> Seen:
    """The dashboard's overview loads; its cluster page counts ``nodes`` nodes ALIVE (the overview
    itself shows nodes only with the autoscaler's status, which a static cluster has not). ``gone``
    says a node will never come (a worker that exited): then the count is taken as it is."""
    def alive() -> int:
        found = re.search(r"ALIVE\s*x\s*(\d+)", p.text())
        return int(found.group(1)) if found else 0

    with page(screenshots) as p:
        started, d = time.monotonic(), p.driver
        try:
            d.get(f"{base}/#/overview")
            p.until("the dashboard's overview", lambda: "Cluster status" in p.text(), 60)
            shot = p.shot("ray-dashboard-overview")
            d.get(f"{base}/#/cluster")
            p.until("the cluster page's count of ALIVE nodes", alive, 60)
            p.until(f"ALIVE x {nodes}", lambda: alive() == nodes, 30, gone=gone)
        except wait.NotReady as e:
            counted = f" (the cluster page says ALIVE x {alive()})" if alive() else ""
            return Seen(False, f"{e.message}{counted}{p.shot('ray-dashboard')}{p.errors()}", _since(started))
        return Seen(True, f"the cluster page says ALIVE x {nodes}{shot}{p.shot('ray-dashboard')}", _since(started))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)
