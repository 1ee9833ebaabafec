"""The documentation site: it builds with warnings as errors, its generated tables follow the code, every
image it shows exists, the quick start's code runs, and a headless browser renders the index and results.

The build (about 20 s of CPU) runs once per session into a temporary folder; the browser checks use
Debian's ``chromium`` when it is installed (CI installs it) and skip with the reason otherwise.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = ("index", "quickstart", "environment", "configuration", "scenarios", "agents", "leaderboard", "results",
         "studies", "fidelity", "performance", "method", "design", "deviations", "sumo", "robustness", "guarantees", "cli",
         "api")
BUILD_TIMEOUT_S = 900
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from scratch (``-E``) the way ``make docs`` builds it: warnings are errors."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("furo", reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, f"sphinx-build failed (warnings are errors):\n{proc.stderr[-6000:]}"
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), page
    index = (site / "index.html").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f'href="{page}.html' in index, f"{page} is not in the index's navigation"


def _text(page: Path) -> str:
    """The page's text: tags dropped (Sphinx splits literals into one span per word), entities decoded, one space
    between words."""
    raw = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
    return " ".join(html.unescape(raw).split()) + " "


def test_generated_tables_follow_the_code(site: Path) -> None:
    from agents.baselines import AGENTS
    from benchmarks.scenarios import SCENARIOS
    from iov_env import ENV_IDS
    from iov_env.config import LIMITS

    config = _text(site / "configuration.html")
    for name, limit in LIMITS.items():
        assert f"{name} " in config and limit.describe() in config, name
    scenarios = _text(site / "scenarios.html")
    for sid in [*SCENARIOS, *ENV_IDS]:
        assert f"{sid} " in scenarios, sid
    agents = _text(site / "agents.html")
    for name, cls in AGENTS.items():
        assert f"{name} {cls.__module__}.{cls.__name__}" in agents, name


def test_cli_reference_lists_every_command(site: Path) -> None:
    import click

    cli = pytest.importorskip("iov_env.cli", reason="this checkout has no iov command")
    group = next(v for v in vars(cli).values() if isinstance(v, click.Group))
    text = _text(site / "cli.html").replace("[ ", "[").replace(" ]", "]")  # highlighting spaces the brackets
    assert len(group.commands) >= 9
    for name, command in group.commands.items():
        assert f"iov {name} [OPTIONS]" in text, name
        for sub in getattr(command, "commands", {}):
            assert f"iov {name} {sub} [OPTIONS]" in text, f"{name} {sub}"


def _images(page: Path) -> list[str]:
    return re.findall(r"<img[^>]*\bsrc=\"([^\"]+)\"", page.read_text(encoding="utf-8"))


def test_every_image_resolves_to_a_nonempty_file(site: Path) -> None:
    seen = 0
    for page in site.rglob("*.html"):
        for src in _images(page):
            if src.startswith(("http:", "https:", "data:")):
                continue
            target = (page.parent / src.split("#")[0].split("?")[0]).resolve()
            assert target.is_file() and target.stat().st_size > 0, f"{page.name}: broken image {src}"
            seen += 1
    assert len(_images(site / "results.html")) >= 6 and len(_images(site / "index.html")) >= 1
    assert seen >= 7


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


# runs each block in a fresh namespace of one interpreter (one start-up and import for all of them)
RUN_BLOCKS = """
import sys, traceback
blocks = sys.argv[1:]
for i, code in enumerate(blocks):
    print(f"--- block {i}", flush=True)
    try:
        exec(compile(code, f"<block {i}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        print(f"FAILED block {i}", file=sys.stderr)
        sys.exit(1)
"""


def run_blocks(blocks: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Python code blocks one after the other, each in a fresh namespace, in one subprocess."""
    return subprocess.run([sys.executable, "-c", RUN_BLOCKS, *blocks], capture_output=True, text=True, timeout=600,
                          env=_env(), cwd=cwd)


def test_every_quickstart_code_block_runs(tmp_path: Path) -> None:
    blocks = _python_blocks((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    proc = run_blocks(blocks, tmp_path)
    assert proc.returncode == 0, f"a quick-start block failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    outputs = proc.stdout.split("--- block ")[1:]
    assert len(outputs) == len(blocks) and all(out.strip().split("\n", 1)[1:] for out in outputs), \
        "every quick-start block prints what it shows"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser: install Debian's chromium (apt-get install -y chromium)")


@pytest.mark.parametrize(("page", "title", "heading"), [("index", "iov-env", "iov-env"),
                                                         ("results", "Results", "Results")])
def test_headless_browser_renders_the_page(site: Path, tmp_path: Path, page: str, title: str, heading: str) -> None:
    browser = _chromium()
    url = (site / f"{page}.html").as_uri()
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r"<title>(.*?)</title>", dom.stdout, flags=re.S)
    assert found and title in html.unescape(found.group(1)), found
    headings = [html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in re.findall(r"<h1[^>]*>(.*?)</h1>", dom.stdout, re.S)]
    assert any(h.startswith(heading) for h in headings), headings
    shot = tmp_path / f"{page}.png"
    proc = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,1600", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file() and shot.stat().st_size > 0, proc.stderr[-2000:]
    image = pytest.importorskip("PIL.Image", reason="reading the screenshot needs Pillow (matplotlib's dependency)")
    import numpy as np

    pixels = np.asarray(image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) one colour"
    assert pixels.std() > 10


# -- the README and the citation file ---------------------------------------------------------------------
README = ROOT / "README.md"


def test_readme_is_a_five_minute_read() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert 150 <= len(lines) <= 250, f"README has {len(lines)} lines; allowed: 150-250 (details go to docs/)"
    text = "\n".join(lines)
    for needed in ("make demo", "make test", "pip install torch==", "make docs", "CITATION.cff", "iov leaderboard"):
        assert needed in text, needed
    assert "PAPER.md" not in text and "DESIGN.md" not in text, "the README points outside the repository"


def test_readme_images_exist() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    assert images
    for src in images:
        assert (ROOT / src).is_file() and (ROOT / src).stat().st_size > 0, src


def test_readme_code_runs(tmp_path: Path) -> None:
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert blocks
    proc = run_blocks(blocks, tmp_path)
    assert proc.returncode == 0, f"a README block failed:\n{proc.stderr[-3000:]}"


def test_citation_file_names_the_software_and_the_paper() -> None:
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert cff.get(key), key
    import iov_env

    assert str(cff["version"]) == iov_env.__version__
    paper = cff["preferred-citation"]
    assert "2508.09532" in paper["url"] and paper["title"].startswith("Decentralized Rank Scheduling")
    assert paper["authors"] and paper["type"] == "article"
