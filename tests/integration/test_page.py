"""The snippet and the demo storefront in a real browser: Debian's Chromium driven by Playwright.

A live `storefront serve` of the VR store (the example config, with a 2 s reward window so that joins happen
within the test) and its `/demo` page, which uses only `/static/storefront.js` with the browser key.  The
browser is `/usr/bin/chromium` from Debian's package (the test set-up installs it), never a download.
Screenshots are saved in `test-artifacts/` (or `$STOREFRONT_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.conftest import LiveService, free_port, start_service, stop_service
from tests.support import BROWSER_KEY, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("STOREFRONT_TEST_ARTIFACTS") or ROOT / "test-artifacts")
# The browser's own line for a request that failed (the service down); the page itself logs nothing.
_NETWORK_LINE = re.compile(r"^Failed to load resource")


STORE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>another origin</title></head><body>
<section data-storefront-slot="hero"><div data-item="beat-saber">Beat Saber</div>
<div data-item="superhot" hidden>Superhot</div><div data-item="synth-riders" hidden>Synth Riders</div></section>
<script src="%(service)s/static/storefront.js" data-key="%(key)s" data-context='{"device": "quest"}'></script>
</body></html>"""


@pytest.fixture(scope="module")
def store_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A store's own web server on another origin (another port), serving the page written into its folder."""
    folder = tmp_path_factory.mktemp("store-site")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: _answers(url), 10), "the store's web server did not start"
    yield url, folder
    server.terminate()
    server.wait(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, store_site: tuple[str, Path]) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp("page")
    config = yaml.safe_load((ROOT / "examples" / "storefront.yaml").read_text())
    config["reward"]["window"] = "2s"
    config.setdefault("service", {})["cors_origins"] = [store_site[0]]
    path = tmp / "storefront.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    service = start_service(tmp, path, env_extra={"STOREFRONT_DEMO_KEY": BROWSER_KEY})
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/setup-system.sh as root (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


def open_page(browser: Any) -> tuple[Any, list[str]]:
    """A fresh page, and the list its console errors and uncaught exceptions are collected in."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not _NETWORK_LINE.match(m.text)
            else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    return page, problems


def shown(page: Any, slot: str) -> list[str]:
    """The items visible in a slot."""
    cards = page.locator(f'[data-storefront-slot="{slot}"] [data-item]')
    return [cards.nth(i).get_attribute("data-item") for i in range(cards.count()) if cards.nth(i).is_visible()]


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def metric(live: LiveService, name: str, **labels: str) -> float:
    total = 0.0
    for line in requests.get(f"{live.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rpartition(" ")[2])
    return total


def test_the_demo_shows_the_ranked_items_and_a_click_is_a_joined_reward(
    live: LiveService, browser: Any, tmp_path: Path
) -> None:
    page, problems = open_page(browser)
    clicks_before = metric(live, "storefront_rewards_total", slot="hero", event="click")
    with page.expect_response(lambda r: "/v1/rank" in r.url) as ranked:
        page.goto(f"{live.url}/demo?device=quest&country=JP")
    answer = ranked.value.json()
    assert ranked.value.status == 200 and "key=" in ranked.value.url  # the browser key, in the URL
    page.wait_for_function("document.querySelector('[data-storefront-slot=hero]').dataset.eventId")
    chosen = {s["slot"]: s["item"] for s in answer["slots"]}
    for slot, item in chosen.items():
        assert shown(page, slot) == [item], slot  # exactly the ranked item, every other card hidden
    screenshot(page, "demo-ranked")

    with page.expect_request(lambda r: "/v1/reward" in r.url) as beacon:
        page.locator('[data-storefront-slot="hero"] [data-item]:visible h3').click()
    # A beacon's body is not visible to the driver: the joined record below shows what each one carried.
    assert beacon.value.method == "POST" and "key=" in beacon.value.url
    hero_item = chosen["hero"]
    with page.expect_request(lambda r: "/v1/reward" in r.url) as added:
        page.locator(f'[data-storefront-slot="hero"] [data-add="{hero_item}"]').click()
    assert added.value.method == "POST"
    with page.expect_request(lambda r: "/v1/reward" in r.url) as bought:
        page.click("#buy")
    assert bought.value.method == "POST"
    screenshot(page, "demo-after-purchase")

    assert wait_for(lambda: metric(live, "storefront_rewards_total", slot="hero", event="click") > clicks_before, 10)
    out = tmp_path / "joined.jsonl"
    records: list[dict[str, Any]] = []

    def hero_joined() -> bool:
        live.storefront("export", "--out", str(out))
        records[:] = [r for r in map(json.loads, out.read_text().splitlines())
                      if r["event_id"] == answer["event_id"] and r["slot"] == "hero"]  # fmt: skip
        return bool(records)

    assert wait_for(hero_joined, 30, interval=0.5), "the hero's decision was never joined"
    assert records[0]["chosen"] == hero_item and records[0]["outcomes"] == ["add_to_cart", "click", "purchase"]
    assert not problems, problems
    page.close()


@pytest.mark.parametrize("failure", ["down", "slow"])
def test_with_the_service_down_or_slow_the_page_keeps_its_defaults_and_logs_no_error(
    live: LiveService, browser: Any, failure: str
) -> None:
    page, problems = open_page(browser)
    if failure == "down":
        page.route("**/v1/rank*", lambda route: route.abort("connectionrefused"))
    else:  # answers after 1 s, long past the snippet's 150 ms

        def late(route: Any) -> None:
            time.sleep(1.0)
            with contextlib.suppress(Exception):  # the page gave up on it: nothing to continue
                route.continue_()

        page.route("**/v1/rank*", late)
    page.goto(f"{live.url}/demo?device=pcvr")
    page.wait_for_function("window.storefront && window.storefront.ready")
    page.evaluate("window.storefront.ready")  # the snippet settled (gave up)
    config = yaml.safe_load((ROOT / "examples" / "storefront.yaml").read_text())
    for slot in config["slots"]:  # each slot's own default, as the page rendered it
        default = slot["default"] if isinstance(slot["default"], str) else slot["default"][0]
        assert shown(page, slot["name"]) == [default], slot["name"]
    assert page.locator("[data-event-id]").count() == 0  # nothing ranked, so no click is reported
    screenshot(page, f"demo-service-{failure}")
    assert not problems, problems
    page.close()


def test_the_snippet_is_served_as_javascript(live: LiveService) -> None:
    response = requests.get(f"{live.url}/static/storefront.js", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/javascript")
    assert "sendBeacon" in response.text and "AbortController" in response.text


def test_a_page_of_a_listed_origin_is_ranked_across_origins(
    live: LiveService, browser: Any, store_site: tuple[str, Path]
) -> None:
    """The store's page on its own host includes the snippet from the service's host: the browser's preflight
    and rank pass because the store's origin is in service.cors_origins."""
    url, folder = store_site
    (folder / "index.html").write_text(STORE_PAGE % {"service": live.url, "key": BROWSER_KEY})
    page, problems = open_page(browser)
    with page.expect_response(lambda r: "/v1/rank" in r.url and r.request.method == "POST") as ranked:
        page.goto(f"{url}/index.html")
    item = ranked.value.json()["slots"][0]["item"]
    page.wait_for_function("document.querySelector('[data-storefront-slot=hero]').dataset.eventId")
    assert ranked.value.headers["access-control-allow-origin"] == url
    assert shown(page, "hero") == [item] and item in {"beat-saber", "superhot", "synth-riders"}
    screenshot(page, "other-origin-ranked")
    assert not problems, problems
    page.close()
