"""The HTML report in a real browser (headless Chromium), at 1400 px and at a phone's width (390 px).

The report (every law's first quick law-book entry, shared with the contract test's runs) gets a small
script that, once the page has loaded, measures what a reader would see: how far the page overflows
horizontally, and whether every figure decoded. Chromium prints the resulting DOM (``--dump-dom``) and
takes a screenshot, which is checked too (the window's size, not blank). The phone width is an iframe
of 390 px (headless Chromium's windows are at least 500 px wide), so the page's own media queries
apply. Skipped, with the reason, where no Chromium is installed (`.ci/run` installs Debian's).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lmech.config import to_dict
from lmech.experiments import get, names
from lmech.report.html import write_report
from lmech.store import RunStore

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--allow-file-access-from-files"]

CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var doc = document.documentElement;
  var result = {width: window.innerWidth, scroll: Math.max(doc.scrollWidth, document.body.scrollWidth),
                images: imgs.length, loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
                wide: Array.prototype.slice.call(document.querySelectorAll('body *')).filter(function (e) {
                  return e.getBoundingClientRect().right > window.innerWidth + 1; }).slice(0, 5).map(function (e) {
                  return e.tagName + '.' + e.className; })};
  var out = document.createElement('pre'); out.id = 'lmech-check'; out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
  if (window.parent !== window) { window.parent.postMessage(JSON.stringify(result), '*'); }
});
</script>"""

PHONE = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="{src}" style="width:390px;height:844px;border:0"></iframe>
<script>window.addEventListener('message', function (e) {{
  var out = document.createElement('pre'); out.id = 'lmech-check'; out.textContent = e.data; document.body.appendChild(out);
}});</script></body></html>"""


def _chromium(args: list[str], profile: Path, timeout: int = 180) -> str:
    done = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout


def _measure(page: Path, width: int, height: int, profile: Path) -> dict:
    dom = _chromium([f"--window-size={width},{height}", "--virtual-time-budget=20000", "--dump-dom",
                     page.as_uri()], profile)
    found = re.search(r'<pre id="lmech-check">(.*?)</pre>', dom, flags=re.S)
    assert found, f"the check did not run in {page.name}: {dom[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def _screenshot(page: Path, width: int, height: int, profile: Path, out: Path) -> None:
    import matplotlib.image as mpimg

    _chromium([f"--window-size={width},{height}", "--virtual-time-budget=20000", f"--screenshot={out}", page.as_uri()],
              profile)
    pixels = mpimg.imread(out)
    assert pixels.shape[:2] == (height, width)
    assert float(pixels[..., :3].std()) > 0.02  # text and figures, not a blank page


@pytest.fixture(scope="module")
def lawbook_report(tmp_path_factory, quick_run) -> Path:
    """The report of every law's first quick entry, written through the store as `lmech check` writes it."""
    folder = tmp_path_factory.mktemp("browser")
    store = RunStore(folder / "lab")
    ids = []
    for name in names():
        exp = get(name)
        label, config = exp.lawbook(quick=True)[0]
        _prediction, _measurement, verdicts, figures = quick_run(name)
        handle = store.begin(name, to_dict(config), {"label": label, "law": exp.law, "citation": exp.citation})
        handle.write_json("verdict.json", [v.to_dict() for v in verdicts])
        handle.write_json("summary.json", {v.key: v.agreement for v in verdicts})
        for path in figures:
            target = handle.figures_dir / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(path).read_bytes())
        handle.finish("done")
        ids.append(handle.run_id)
    report = write_report(store, folder / "report.html", ids)
    checked = folder / "checked.html"
    checked.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    return checked


@pytest.mark.slow
def test_report_reads_at_1400_px_and_on_a_phone(lawbook_report, tmp_path):
    figures = lawbook_report.read_text().count('class="figure"')
    assert figures >= len(names())
    wide = _measure(lawbook_report, 1400, 900, tmp_path / "p1")
    assert wide["images"] == figures and wide["loaded"] == figures, wide  # every figure decoded
    assert wide["scroll"] <= wide["width"], wide  # no horizontal overflow
    _screenshot(lawbook_report, 1400, 900, tmp_path / "p2", tmp_path / "wide.png")

    phone_page = lawbook_report.with_name("phone.html")
    phone_page.write_text(PHONE.format(src=lawbook_report.name))
    phone = _measure(phone_page, 500, 900, tmp_path / "p3")
    assert phone["width"] == 390, phone
    assert phone["images"] == figures and phone["loaded"] == figures, phone
    assert phone["scroll"] <= phone["width"], phone
    _screenshot(phone_page, 500, 900, tmp_path / "p4", tmp_path / "phone.png")
