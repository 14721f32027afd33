"""The app page's metrics in a real browser (Chromium): history from the server drawn on open, with axes that have
units and sensible ranges, and the same history found again after a reload."""

import time

import pytest
from berth.observe.history import RESOLUTION, history_delete, sample_write, window_of

from tests.dashboard.conftest import PageOpener, build_world
from tests.dashboard.conftest import browser as browser  # noqa: F401  (the fixture, shared with tests/dashboard)


@pytest.fixture
def world(browser, transactional_db):  # noqa: F811
    return build_world()


@pytest.fixture
def open_page(browser, live_server, world):  # noqa: F811
    opener = PageOpener(browser, live_server.url)
    yield opener
    opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


@pytest.fixture
def demo_history(rds):
    """Twenty minutes of 10 s windows of the world's app `demo`: an idle worker (CPU 0) and a web with traffic."""
    history_delete(app="demo", client=rds)
    now = window_of(time.time())
    for i in range(120):
        window = now - (120 - i) * RESOLUTION
        sample_write(
            app="demo",
            process="web",
            window=window,
            values={
                "cpu": 4.0 + i % 5,
                "mem": 61,
                "n": 2,
                "rps": 3.5,
                "e5xx": 0.1 if i % 10 == 0 else 0,
                "p95": 180,
            },
            client=rds,
        )
        sample_write(
            app="demo", process="worker", window=window, values={"cpu": 0.0, "mem": 30, "n": 1}, client=rds
        )
    yield
    history_delete(app="demo", client=rds)


def ticks(page, chart: str) -> list[str]:
    return page.locator(f"#{chart} text.y-tick").all_text_contents()


def test_charts_show_history_with_units_and_sane_axes_after_load_and_reload(open_page, demo_history):
    page = open_page("viewer")
    for _ in range(2):  # the page as opened, then reloaded: the same history, from the server
        page.goto("/apps/demo/")
        page.wait_for_function("Number(document.querySelector('#charts').dataset.loaded) >= 1")
        assert page.locator("#metrics-empty").is_hidden()
        cpu, memory, rps, p95, errors = (
            ticks(page, c) for c in ("chart-cpu", "chart-memory", "chart-rps", "chart-p95", "chart-5xx")
        )
        assert cpu[0] == "0%" and cpu[-1] == "10%"  # web peaks at 8 %: a nice top above it
        assert memory[-1] == "80 MB" and rps[-1] == "4 req/s" and p95[-1] == "200 ms"
        assert errors[-1] == "0.15 /s"
        assert page.locator("#chart-cpu text.x-tick").count() >= 3  # clock times along the bottom
        points = page.locator("#chart-rps polyline[data-process=web]").get_attribute("points")
        assert points.count(",") == 120
        assert page.locator("#chart-cpu polyline").count() == 2  # web and the idle worker
        caption = page.locator("#chart-p95").locator("xpath=..").locator("figcaption").inner_text()
        assert caption == "p95 latency (ms) — now: web 180 ms"
    page.click("[data-metrics-range='24h']")
    page.wait_for_function("document.querySelector('#charts').dataset.step === '120'")
    assert page.locator("#chart-cpu text.x-tick").count() >= 4


def test_an_idle_app_reads_a_sensible_range_not_zero_to_zero(open_page, rds):
    history_delete(app="demo", client=rds)
    now = window_of(time.time())
    try:
        for i in range(3):
            sample_write(
                app="demo",
                process="web",
                window=now - i * RESOLUTION,
                values={"cpu": 0.0, "mem": 0},
                client=rds,
            )
        page = open_page("viewer")
        page.goto("/apps/demo/")
        page.wait_for_function("Number(document.querySelector('#charts').dataset.loaded) >= 1")
        assert ticks(page, "chart-cpu") == ["0%", "0.25%", "0.5%", "0.75%", "1%"]
        assert ticks(page, "chart-memory")[-1] == "10 MB"
    finally:
        history_delete(app="demo", client=rds)


@pytest.fixture
def busy_history(rds):
    """Ten minutes of a busy web: hundreds of requests a second, as under `make bench`'s load."""
    history_delete(app="demo", client=rds)
    now = window_of(time.time())
    for i in range(60):
        values = {"cpu": 40.0, "mem": 1400, "n": 2, "rps": 1200.0 + i, "e5xx": 0.075, "p95": 55}
        sample_write(app="demo", process="web", window=now - (60 - i) * RESOLUTION, values=values, client=rds)
    yield
    history_delete(app="demo", client=rds)


def test_every_y_label_fits_inside_its_chart_with_big_figures(open_page, busy_history):
    """Seen in the deploy-under-load screenshot: "600 req/s" was cut to "00 req/s" at the chart's left edge."""
    page = open_page("viewer")
    page.goto("/apps/demo/")
    page.wait_for_function("Number(document.querySelector('#charts').dataset.loaded) >= 1")
    for chart in ("chart-cpu", "chart-memory", "chart-rps", "chart-p95", "chart-5xx"):
        left = page.locator(f"#{chart}").bounding_box()["x"]
        for tick in page.locator(f"#{chart} text.y-tick").all():
            assert tick.bounding_box()["x"] >= left, (
                f"{chart}: {tick.text_content()!r} is cut at the left edge"
            )
    assert ticks(page, "chart-rps")[-1].endswith("req/s") and len(ticks(page, "chart-rps")[-1]) >= 9
