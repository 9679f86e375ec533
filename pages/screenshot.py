"""docs/space.png (`make screenshot`): the Space on a trained model, its first example analysed, in Chromium.

Needs a trained model and its dataset (the gallery's examples) and Debian's chromium, as the browser test does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from devtools.launcher import open_page, running_app
from pages.blocks import DOCS, REPO_ROOT

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/model", help="Trained model folder or Hub id (make train).")
    parser.add_argument("--dataset", default="build/dataset", help="Dataset whose test split gives the examples.")
    parser.add_argument("--output", default=str(DOCS / "space.png"), help="Where the screenshot goes.")
    args = parser.parse_args()
    env = {"MODEL": args.model, "DATASET": args.dataset}
    with (
        tempfile.TemporaryDirectory() as folder,
        running_app(REPO_ROOT / "space" / "app.py", env, REPO_ROOT, Path(folder) / "log") as (_, url),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, url)
        page.locator("#examples .thumbnail-item").first.click()  # the first example of the gallery
        page.locator("#decision").get_by_text("Answered in").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # let the images render
        page.screenshot(path=args.output, full_page=True)
        browser.close()
    print(f"{args.output} written")


if __name__ == "__main__":
    main()
