"""proofs/*.md: every `Test:` line names an existing test; links and math render on GitHub."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROOFS = ROOT / "proofs"
TESTS = ROOT / "tests" / "proofs"
DOCS = sorted(PROOFS.glob("*.md"))
TEST_LINE = re.compile(r"^Test: `(tests/proofs/(test_\w+)\.py)::(test_\w+)`$")
RESULT_HEADING = re.compile(r"^### (Lemma|Theorem|Corollary|Proposition|Example|Search) ")
# A topic file proofs/<topic>.md owns tests/proofs/test_<topic>.py.
TOPICS = sorted(p.stem for p in DOCS if (TESTS / f"test_{p.stem}.py").exists())


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped (word characters, '-' and ' ' stay),
    # spaces become hyphens.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in path.read_text().splitlines()
            if line.startswith("#")}


def test_there_are_topic_files():
    assert {"inclusion", "converse", "first_order", "mgda_descent", "convergence", "gram",
            "pcgrad_cagrad"} <= set(TOPICS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_line_names_an_existing_test(doc):
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if not line.startswith("Test:"):
            continue
        match = TEST_LINE.match(line)
        assert match, f"{doc.name}:{number}: malformed test line {line!r}"
        path, _, name = match.groups()
        assert (ROOT / path).exists(), f"{doc.name}:{number}: no file {path}"
        assert name in _test_functions(ROOT / path), f"{doc.name}:{number}: no {path}::{name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_result_names_its_test(doc):
    section, tested = None, set()
    for line in doc.read_text().splitlines():
        if line.startswith("#"):
            if section is not None:
                assert section in tested, f"{doc.name}: {section!r} has no Test: line"
            section = line if RESULT_HEADING.match(line) else None
        elif section and TEST_LINE.match(line):
            tested.add(section)
    if section is not None:
        assert section in tested, f"{doc.name}: {section!r} has no Test: line"


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_test_is_cited_by_its_file(topic):
    cited = {m.group(3) for m in map(TEST_LINE.match, (PROOFS / f"{topic}.md").read_text()
                                     .splitlines()) if m}
    assert _test_functions(TESTS / f"test_{topic}.py") <= cited


def test_claims_cite_existing_tests():
    known = set().union(*(_test_functions(p) for p in TESTS.glob("test_*.py")))
    cited = set(re.findall(r"`(test_\w+)`", (PROOFS / "claims.md").read_text()))
    assert cited and cited <= known, cited - known


def test_index_lists_every_file():
    index = (PROOFS / "README.md").read_text()
    for doc in DOCS:
        if doc.name != "README.md":
            assert f"]({doc.name})" in index, doc.name


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_resolve(doc):
    for target, anchor in re.findall(r"\]\(([\w./-]*?)(?:#([^)]*))?\)", doc.read_text()):
        if target.startswith("http"):
            continue
        path = (doc.parent / target) if target else doc
        assert path.exists(), f"{doc.name}: broken link {target}"
        if anchor:
            assert anchor in _anchors(path), f"{doc.name}: no heading #{anchor} in {path.name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_math_is_github_safe(doc):
    # Inline math is $`...`$ and display math is a ```math fence: GitHub's plain $...$
    # lets Markdown eat backslashes, braces and underscores inside formulas.
    text = doc.read_text()
    without_fences = re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)
    assert "$$" not in without_fences, f"{doc.name}: use a ```math fence, not $$"
    inline = re.findall(r"\$`([^`]*)`\$", without_fences)
    rest = re.sub(r"\$`[^`]*`\$", "", without_fences)
    rest = re.sub(r"`[^`\n]*`", "", rest)
    assert "$" not in rest, f"{doc.name}: bare $ outside a $`...`$ span"
    for formula in inline:
        assert formula.strip() == formula and formula, f"{doc.name}: bad inline math {formula!r}"
    for line in text.splitlines():
        if line.startswith("#"):
            assert "$" not in line, f"{doc.name}: math in a heading breaks its anchor: {line}"
        if line.lstrip().startswith("```math"):
            # GitHub drops math fences that share a list item with inline math.
            assert line == "```math", f"{doc.name}: indented math fence {line!r}"
    fences = re.findall(r"^```math\n(.*?)^```$", text, flags=re.S | re.M)
    for block in fences:
        assert "\\operatorname" not in block and "\n\n" not in block, doc.name
