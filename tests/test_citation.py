"""CITATION.cff, LICENSE, CHANGELOG, pyproject.toml and the README's BibTeX say the same things."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def cff() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def bibtex_entries() -> dict[str, dict[str, str]]:
    """The README's BibTeX entries: key -> {field: value without TeX braces}."""
    text = (ROOT / "README.md").read_text()
    entries = {}
    for kind, key, body in re.findall(r"@(\w+)\{(\w+),\n(.*?)\n\}", text, flags=re.S):
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*(.*?),?$", body, flags=re.M))
        entries[key] = {"type": kind, **{k: re.sub(r"[{}$]", "", v) for k, v in fields.items()}}
    return entries


def plain(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.replace("_0", "0").lower()).strip()


def test_citation_has_what_a_software_citation_needs() -> None:
    data = cff()
    for key in ("cff-version", "title", "version", "date-released", "license", "authors", "preferred-citation"):
        assert data.get(key), f"CITATION.cff: {key} missing"
    assert data["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    preferred = data["preferred-citation"]
    assert preferred["title"] == data["title"] and preferred["version"] == data["version"]
    assert preferred["year"] == data["date-released"].year


def test_one_version_and_release_date_everywhere() -> None:
    data = cff()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == data["version"] and project["license"] == data["license"]
    newest = re.search(r"^## (\S+) — (\d{4}-\d{2}-\d{2})$", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert newest is not None, "CHANGELOG.md: no '## VERSION — DATE' heading"
    assert (newest[1], newest[2]) == (data["version"], str(data["date-released"]))
    software = bibtex_entries()["sparse_training_reproduced"]
    assert software["version"] == data["version"] and software["year"] == str(data["date-released"].year)
    assert plain(software["title"]) == plain(data["title"])


def test_every_paper_the_readme_cites_is_a_reference_and_back() -> None:
    cited = {plain(e["title"]) for key, e in bibtex_entries().items() if key != "sparse_training_reproduced"}
    referenced = {plain(r["title"]) for r in cff()["references"]}
    assert cited == referenced
    assert all(r.get("year") and r.get("authors") for r in cff()["references"])
