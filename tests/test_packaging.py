"""The installed distribution: one import name, `perfagent`, with everything a run needs inside it."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_one_package_that_runs_on_its_own(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("perfagent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"perfagent", wheel.name.split("-py")[0] + ".dist-info"}
    for needed in ("perfagent/measure/harness.py", "perfagent/sandbox/startup/sitecustomize.py",
                   "perfagent/prompts/optimize.j2", "perfagent/report/templates/report.html.j2",
                   "perfagent/workloads/textstats/workload.py", "perfagent/workloads/tasks.jsonl"):
        assert needed in names
    # installed beside (not instead of) this checkout's dependencies; its folder comes first on the path
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import perfagent, perfagent.model.prompting as p, perfagent.measure as s, perfagent.cli as c; "
             "print(perfagent.__file__, p.PROMPTS, s.HARNESS, c.EXAMPLE, sep='\\n')")
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(line).resolve().is_relative_to(target) for line in out), out
    assert Path(out[1], "optimize.j2").is_file() and Path(out[2]).is_file() and Path(out[3], "textstats").is_dir()
    helped = subprocess.run([sys.executable, "-m", "perfagent", "--help"], env={"PYTHONPATH": str(target),
                            "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert helped.returncode == 0 and "optimize" in helped.stdout


PERFAGENT = str(Path(sys.executable).with_name("perfagent"))
COMMANDS = ["optimize", "profile", "demo", "batch", "evaluate", "report"]


def _command(*args):
    done = subprocess.run([PERFAGENT, *args], capture_output=True, text=True, env={"COLUMNS": "200",
                          "PATH": "/usr/bin:/bin"})
    return done.returncode, done.stdout, done.stderr


def test_version_and_shell_completion():
    from importlib.metadata import version

    assert _command("--version") == (0, f"perfagent {version('perfagent')}\n", "")
    code, script, _ = _command("--show-completion", "bash")
    assert code == 0 and "_perfagent_completion" in script and "complete " in script


def test_help_never_points_into_the_source():
    """A user reads --help without perfagent's source: no text there may send them to one of its files. (Rendered
    in-process: the installed command's --help is checked above and by the wheel test.)"""
    from typer.testing import CliRunner

    from perfagent.cli import app

    runner = CliRunner()
    texts = [runner.invoke(app, [*command, "--help"], terminal_width=200).output
             for command in [[], *([name] for name in COMMANDS)]]
    assert all("Usage:" in text for text in texts) and "Localization section" in " ".join(texts[2].split())
    for text in texts:
        assert not re.search(r"\b(agent|sandbox|perfagent)/\w+\.py\b", " ".join(text.split())), text


def test_the_subpackages_import_each_other_in_one_direction():
    """The layout shows the flow: among perfagent's subpackages (and its top modules) no import goes in a circle."""
    import ast
    import graphlib

    graph: dict[str, set[str]] = {}
    for path in [*(ROOT / "agent").rglob("*.py"), *(ROOT / "sandbox").glob("*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        unit = "sandbox" if parts[0] == "sandbox" else parts[1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("perfagent"):
                module = node.module.split(".")
                targets = [module[1]] if len(module) > 1 else [alias.name for alias in node.names]
                graph.setdefault(unit, set()).update(t for t in targets if t != unit)
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle
    assert order.index("sandbox") < order.index("measure") < order.index("loop") < order.index("cli")


def test_functions_fit_a_screen_and_take_few_parameters():
    """No function takes more than 6 parameters or runs over 60 lines, unless a comment on its `def` line or a
    `# size: ...` line above it says why (the typer commands take one parameter per command-line option)."""
    import ast

    too_big = []
    for path in [*(ROOT / "agent").rglob("*.py"), *(ROOT / "sandbox").rglob("*.py")]:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                size = (len(names) + bool(args.vararg) + bool(args.kwarg), node.end_lineno - node.lineno + 1)
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                why = "  # " in lines[node.lineno - 1] or lines[first - 2].strip().startswith("# size:")
                if (size[0] > 6 or size[1] > 60) and not why:
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {size}")
    assert not too_big, too_big
