"""Settings (agent/config.py) is the one home of every setting's default: no module below it restates one as a keyword
default or a dataclass / model field default, where it would silently stay behind when the setting's default moves."""
import ast
from pathlib import Path

from perfagent.config import Settings

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "agent" / "config.py"
# names a setting goes by below Settings, besides its own
ALIASES = {"max_processes": ("processes",), "test_file_timeout_s": ("file_timeout_s",),
           "candidate_timeout_s": ("timeout_floor_s",), "profile_seconds": ("seconds",)}


def numeric_defaults() -> dict[str, float]:
    """Each name a setting with a numeric default goes by, and that default."""
    defaults = {}
    for name, field in Settings.model_fields.items():
        value = field.default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            defaults.update({alias: value for alias in (name, *ALIASES.get(name, ()))})
    return defaults


def _number(node: ast.AST | None) -> float | None:
    """The number a default is written as (600, 600.0, Field(600.0, ...), typer.Option(600.0, ...)), if it is one."""
    if isinstance(node, ast.Call) and node.args and (getattr(node.func, "id", None) == "Field"
                                                     or getattr(node.func, "attr", None) == "Option"):
        node = node.args[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    return None


def defaults_in(tree: ast.AST):
    """(line, name, default) of every keyword default and class-body field default of a module."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                     *zip(args.kwonlyargs, args.kw_defaults)]
            yield from ((node.lineno, arg.arg, _number(default)) for arg, default in pairs)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    yield statement.lineno, statement.target.id, _number(statement.value)
                elif isinstance(statement, ast.Assign):
                    yield from ((statement.lineno, target.id, _number(statement.value))
                                for target in statement.targets if isinstance(target, ast.Name))


def restated(defaults: dict[str, float]) -> list[str]:
    found = []
    for path in sorted([*(ROOT / "agent").rglob("*.py"), *(ROOT / "sandbox").rglob("*.py")]):
        if path == HOME:
            continue
        for line, name, value in defaults_in(ast.parse(path.read_text(), str(path))):
            if name in defaults and value is not None and value == defaults[name]:
                found.append(f"{path.relative_to(ROOT)}:{line}: {name} = {value}")
    return found


def test_no_numeric_default_of_a_setting_is_restated_below_settings():
    assert restated(numeric_defaults()) == []


def test_the_check_sees_each_way_a_default_is_restated():
    """The check reads keyword defaults, dataclass and model fields, and a setting's other name; a number that is not
    the setting's default, or belongs to another name, passes."""
    source = """
def f(x, min_effect=0.03, *, alpha: float = 0.01, timeout_s=5): pass
class C:
    memory_mb: int = 4096
    processes = 256
    sample_seconds: float = Field(1.0, gt=0)
    file_mb: int = 4096
def command(top_k: int = typer.Option(3, help="")): pass
"""
    found = [(name, value) for _, name, value in defaults_in(ast.parse(source)) if value is not None]
    assert found == [("min_effect", 0.03), ("alpha", 0.01), ("timeout_s", 5), ("memory_mb", 4096),
                     ("processes", 256), ("sample_seconds", 1.0), ("file_mb", 4096), ("top_k", 3)]
    defaults = numeric_defaults()
    assert [(n, v) for n, v in found if n in defaults and v == defaults[n]] == \
        [("min_effect", 0.03), ("alpha", 0.01), ("memory_mb", 4096), ("processes", 256), ("sample_seconds", 1.0),
         ("top_k", 3)]
