"""README's figures are checkable (issue 40): each one it quotes is on BENCHMARKS.md, which is exactly
what the committed results render to -- or sits in a passage that says where else it comes from."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"(?<![\d.])[+-]?\d\.\d{4}(?!\d)")          # how every score is quoted: 4 decimals
SOURCED = re.compile(r"<!-- figures from: (.*?) -->(.*?)<!-- end figures -->", re.S)


def test_the_benchmarks_page_is_what_the_committed_results_render():
    from benchmarks.run import PAGE, page

    assert page() == PAGE.read_text(), "BENCHMARKS.md was edited by hand or its results changed: run make bench"


def unsourced(readme: str, page: str) -> list[str]:
    """README figures outside a sourced passage that BENCHMARKS.md (``page``) does not have."""
    for why, _ in SOURCED.findall(readme):   # a passage outside make bench names its run: a date, or no run
        assert re.search(r"\d{4}-\d\d-\d\d|illustration", why), why
    rest = SOURCED.sub("", readme)
    assert "figures from:" not in rest and "end figures" not in rest, "an unclosed <!-- figures from --> marker"
    on_page = {f.lstrip("+-") for f in FIGURE.findall(page)}
    return sorted({f for f in FIGURE.findall(rest) if f.lstrip("+-") not in on_page})


def test_every_figure_the_readme_quotes_is_on_the_benchmarks_page_or_says_where_it_comes_from():
    missing = unsourced((ROOT / "README.md").read_text(), (ROOT / "BENCHMARKS.md").read_text())
    assert not missing, f"README quotes figures BENCHMARKS.md does not have: {missing}"


def test_the_check_can_fail():
    import pytest

    readme, page = (ROOT / "README.md").read_text(), (ROOT / "BENCHMARKS.md").read_text()
    assert unsourced(readme + "\nthe stack now scores 0.9876\n", page) == ["0.9876"]
    assert unsourced(readme + "\n<!-- figures from: a run on 2026-12-07 -->0.9876\n<!-- end figures -->\n", page) == []
    with pytest.raises(AssertionError):          # a passage that says no run it comes from
        unsourced(readme + "\n<!-- figures from: somewhere -->0.9876\n<!-- end figures -->\n", page)
