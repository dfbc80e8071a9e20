"""Screenshots of every dashboard page, into docs/screenshots/ (issue #17).

    .venv/bin/python scripts/screenshots.py [OUT_DIR]

Builds the browser test's small seeded lab (tests/api/_served.py: D-REAM seed
1, a ToolGen run, a typed Esper run, the XSS D-REAM run of issue #18), serves
it on a loopback port and drives Debian's headless Chromium through
/usr/bin/chromedriver. Needs `apt-get install chromium chromium-driver`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selenium.webdriver.support.wait import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.api._served import browser_missing, chromium, fill_lab, serve

PAGES = (
    ("runs", "/ui/runs"),
    ("run", "/ui/runs/esper-1"),
    ("compare", "/ui/runs?run=all"),
    ("dream", "/ui/dream"),
    ("toolgen", "/ui/toolgen"),
    ("esper", "/ui/esper?run=esper-1"),
    ("audit", "/ui/audit?command_id=esper-1-cmd-1&run=esper-1"),
    ("events", "/ui/events?run=esper-1"),
    ("event", "/ui/events/30"),
    ("ops", "/ui/ops"),
)


def _settled(driver: object) -> bool:
    script = (
        "return !!window.labledgerReady && Array.from(document.querySelectorAll"
        "('div.figure')).every(f => f.dataset.drawn === 'true')"
    )
    return bool(driver.execute_script(script))  # type: ignore[attr-defined]


def main(out: Path) -> int:
    missing = browser_missing()
    if missing is not None:
        print(f"screenshots: {missing}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lab.db'}"
        fill_lab(url)
        with serve(url) as base, chromium(1400, 1000) as driver:
            for name, path in PAGES:
                driver.get(base + path)
                WebDriverWait(driver, 30).until(_settled)
                height = driver.execute_script("return document.body.scrollHeight")
                driver.set_window_size(1400, min(int(height) + 40, 4000))
                target = out / f"{name}.png"
                driver.save_screenshot(str(target))
                print(f"{target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
