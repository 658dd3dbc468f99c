"""The documentation: a short first page with the commands CI and the demo run, links that lead somewhere, and a
settings reference that says what the code does."""
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from perfagent.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
# the first command of the README; tests/test_demo.py checks what it does
DEMO = "python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e . && perfagent demo"
# settings whose default depends on the machine: the reference describes them in words, in italics
MACHINE_DEFAULTS = {"python", "cache-dir"}


def prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks (a fence closes with its own character, as long)."""
    lines, fence = [], None
    for line in text.splitlines():
        opening = re.match(r"\s*(`{3,}|~{3,})", line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            fence = None
        elif fence is None:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text in lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.replace("`", ""))
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """A page's heading anchors; a repeated heading's get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    for line in prose(page.read_text()):
        if heading := re.match(r"#{1,6} (.+)", line):
            base = slug(heading.group(1))
            seen[base] = seen.get(base, -1) + 1
    return {base if n == 0 else f"{base}-{n}" for base, count in seen.items() for n in range(count + 1)}


def links(page: Path) -> list[str]:
    """The targets of a page's markdown links and images, code spans left out."""
    return [target for line in prose(page.read_text())
            for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line))]


def test_every_relative_link_leads_to_a_file_and_its_heading():
    broken, checked = [], 0
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading in {file.name})")
    assert checked >= len(PAGES), "the links were not found"
    assert not broken, "\n".join(broken)


def reference() -> dict[str, str]:
    """The settings reference: its table `setting | default | meaning`, as {setting: default cell}."""
    lines = prose(SETTINGS_PAGE.read_text())
    start = lines.index("| setting | default | meaning |")
    rows: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        setting, default, _meaning = (cell.strip() for cell in line.strip("|").split("|"))
        name = re.fullmatch(r"`([a-z0-9-]+)`", setting)
        assert name, f"not a setting's name: {setting}"
        assert name.group(1) not in rows, f"{name.group(1)} is documented twice"
        rows[name.group(1)] = default
    return rows


def documented_default(cell: str):
    """A default as the reference writes it: `none` (unset) or a TOML value in backticks."""
    if cell == "none":
        return None
    value = re.fullmatch(r"`(.+)`", cell)
    assert value, f"a default that is neither none nor a TOML value in backticks: {cell}"
    return tomllib.loads(f"v = {value.group(1)}")["v"]


def test_the_settings_reference_lists_every_setting_with_its_default():
    rows = reference()
    fields = {name.replace("_", "-"): field for name, field in Settings.model_fields.items()}
    assert sorted(fields.keys() - rows.keys()) == [], "settings missing from docs/settings.md"
    assert sorted(rows.keys() - fields.keys()) == [], "docs/settings.md documents settings that do not exist"
    in_words = {name for name, cell in rows.items() if re.fullmatch(r"\*[^*]+\*", cell)}
    assert in_words == MACHINE_DEFAULTS, "only defaults that depend on the machine are described in words"
    wrong = []
    for name in rows.keys() - in_words:
        actual = fields[name].get_default(call_default_factory=True)
        documented = documented_default(rows[name])
        if type(documented) is not type(actual) or documented != actual:
            wrong.append(f"{name}: documented {rows[name]}, the default is {actual!r}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_is_a_short_first_page_with_the_commands_ci_and_the_demo_run():
    text = README.read_text()
    assert len(text.splitlines()) < 150
    # CI runs the README's test command quietly (-q)
    [ci] = re.findall(r"^\s*(python3 -m venv \.venv && .*)$", (ROOT / ".ci" / "run").read_text(), re.M)
    test_command = re.sub(r" -q\b", "", ci)
    try_it = text.split("\n## Try it\n")[1].split("\n## ")[0]
    assert re.findall(r"```bash\n(.*)\n```", try_it) == [DEMO, test_command]
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert set(PAGES[1:]) <= linked, "a docs page the README does not link"
