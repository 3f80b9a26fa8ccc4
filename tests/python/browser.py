"""A real browser for the web page's tests: Debian's headless Chromium driven through its
`chromium-driver` by selenium, started once per test session. Selenium is given the driver's
path, so its Selenium Manager never runs and nothing is downloaded. Skips when Chromium or the
driver is missing unless EMBER_REQUIRE_BROWSER=1 (scripts/test.sh sets it once it has installed
them). A pytest plugin (`conftest.py` names it in `pytest_plugins`): its fixtures `browser` and
`page` are the suite's, with one definition whichever test module asks for them.

Also here: the directory the tests write screenshots to, and a small reverse proxy that serves
the server under a path prefix, as nginx's `location /ember/ { proxy_pass http://ember/; }`."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from conftest import REPO

T = TypeVar("T")

CHROMIUM = os.environ.get("EMBER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("EMBER_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)


def output_dir() -> Path:
    """Where the page's tests leave their screenshots (EMBER_TEST_OUTPUT, else
    `target/test-output/ui` in the repository)."""
    root = os.environ.get("EMBER_TEST_OUTPUT")
    out = (Path(root) if root else REPO / "target" / "test-output") / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


class Page:
    """The session's browser, with the console and network logs collected across calls (the
    driver hands each log entry out once)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.console: list[dict[str, Any]] = []
        self.network: list[dict[str, Any]] = []

    def collect(self) -> None:
        self.console.extend(self.driver.get_log("browser"))
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.network.append(message["params"]["request"])

    def reset(self, width: int = 1280, height: int = 900) -> None:
        """A blank page at `width` x `height` CSS pixels, with the logs emptied."""
        self.driver.get("about:blank")
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        self.collect()
        self.console.clear()
        self.network.clear()

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
        """Polls `check` until it returns something truthy; fails naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                self.collect()
                raise AssertionError(f"timed out waiting for {what}; console: {self.console}")
            time.sleep(0.1)

    def wait_ready(self, refreshes: int = 1) -> None:
        """Waits until the page has shown data `refreshes` times."""
        self.wait(
            f"{refreshes} refreshes",
            lambda: self.js(
                "return document.body.dataset.state === 'ready' && "
                "Number(document.body.dataset.refreshes || 0) >= arguments[0]",
                refreshes,
            ),
        )

    def errors(self) -> list[dict[str, Any]]:
        """Console entries at error level so far."""
        self.collect()
        return [e for e in self.console if e["level"] == "SEVERE"]

    def foreign_requests(self, origin: str, prefix: str = "/") -> list[str]:
        """Requests the page made anywhere but under `origin` + `prefix`."""
        self.collect()
        out = []
        for r in self.network:
            u = urlsplit(r["url"])
            if f"{u.scheme}://{u.netloc}" != origin or not u.path.startswith(prefix):
                out.append(r["url"])
        return out

    def screenshot(self, name: str) -> Path:
        path = output_dir() / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Page]:
    """Headless Chromium for the whole session."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        if os.environ.get("EMBER_REQUIRE_BROWSER") == "1":
            raise AssertionError(f"the browser tests need {missing}")
        pytest.skip(f"no browser: {missing} (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="ember-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        # Chromium's own traffic (updates, sync, safe browsing) stays off; the page's is checked.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(
        executable_path=CHROMEDRIVER, log_output=str(output_dir() / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield Page(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Page, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The session's browser on a blank page; its screenshot is saved when the test ends."""
    browser.reset()
    yield browser
    browser.screenshot(request.node.name)


# Headers that belong to one connection, not to the request (RFC 9110, section 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


def proxy_handler(upstream: str, prefix: str) -> type[BaseHTTPRequestHandler]:
    """A handler passing `prefix/...` to `upstream/...` and redirecting `prefix` to `prefix/`."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            if self.path == prefix:
                self.send_response(301)
                self.send_header("location", prefix + "/")
                self.send_header("content-length", "0")
                self.end_headers()
                return
            if not self.path.startswith(prefix + "/"):
                self.send_error(404)
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
            try:
                conn.request(self.command, self.path[len(prefix) :], body, headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class Proxy:
    """A reverse proxy on a free port serving `upstream` under `prefix` (in a thread)."""

    def __init__(self, upstream: str, prefix: str = "/ember") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler(upstream, prefix))
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.prefix = prefix
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
