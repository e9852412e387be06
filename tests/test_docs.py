"""The entry-point documents stay what they promise: the README an entry point under 10,000
bytes, docs/design.md the design (under 30,000 bytes, opening with the package map), and
neither cites issue numbers."""
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _read(name):
    with open(os.path.join(ROOT, name), "rb") as f:
        return f.read()


def test_readme_and_design_stay_under_their_sizes():
    assert len(_read("README.md")) < 10_000
    assert len(_read("docs/design.md")) < 30_000


def test_design_opens_with_the_package_map_and_its_layers():
    text = _read("docs/design.md").decode()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[0] == "Package map and data flow", headings
    section = text.split("## Package map and data flow")[1].split("\n## ")[0]
    for package in ("envs", "data", "models", "agents", "training", "planning", "eval", "export"):
        assert package in section, package


def test_no_issue_numbers_in_the_documents():
    for name in ("README.md", "docs/design.md", "docs/your_robot.md"):
        assert not re.search(r"(?i)\bissue\s*#?\d+", _read(name).decode()), name
