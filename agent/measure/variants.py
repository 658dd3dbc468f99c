"""Inputs the candidate has not seen: variants of a workload file whose setup() builds an input of the same kind and
about the same size, with other values (issue 24). A speedup that holds only on the benchmark's own input (an answer
table for it, a fast path for exactly its query) is not an optimization; a file that defines its own
`perturbed_setup()` needs none of these.

A variant changes the literals of setup() (its default arguments included) and of the module-level assignments it
reads (`N_PAIRS = 1000` at top level), never workload() or anything else, so it still runs the same code on an input
built the same way. Which literal sets a size and which a value cannot be known from the text, so there are several
variants, from the purest to the broadest (`SETS`), and the caller keeps those that work. What changes:
- seeds (an argument of `random.seed`, `default_rng`, a `seed=`/`random_state=` keyword, a `SEED = ` name): +1;
- integers from 10 up, and arithmetic of literals (`10**8`): about 1% away from zero, so sizes stay put and values
  move past the neighbours an answer table may hold (the model patches of issue 24 list 10**6 - 1 and 10**6 + 1);
- single-digit integers (degrees, exponents, dimensions: one step can multiply the cost): one step away from zero,
  only in the broadest variant; 0, 1 and -1 (start indices, identities, steps) never;
- floats but 0.0: about 1%; strings and f-strings' text: their last ASCII letter (else digit) takes the next one of its
  class, so lengths, character classes and distinct names stay so ('q1, q2, q3' -> 'q1, q2, r3', 'u1:16' -> 'v1:16');
- never booleans, None, docstrings, or strings that name code or files rather than data (getattr's attribute name,
  a module to import, a path, a subscript key).

Edits replace the literal's own bytes and leave the rest of the file byte-identical, so comments, line numbers (in a
variant's traceback) and the diff a user reads stay the user's; an f-string, whose parts have no positions of their
own before Python 3.12, is rewritten whole with ast.unparse (one-line f-strings only, so lines still match).
Deterministic: the same source gives the same variants.
"""
from __future__ import annotations

import ast
import copy
import operator
import string
import warnings
from dataclasses import dataclass
from typing import Iterator, NamedTuple

# (name, kinds of literal changed): seeds alone give other random values of exactly the same shape; each later set
# risks more (a string that names a mode, a digit that sets a degree), and the caller keeps the ones that run.
SETS = (("seeds", {"seed"}), ("numbers", {"seed", "number"}), ("strings", {"seed", "string"}),
        ("every literal", {"seed", "number", "string", "small"}))
SEED_WORDS = ("seed", "random_state")  # in a callee's, keyword's or variable's name: its integer is a seed
SEED_CALLS = {"Random", "RandomState", "default_rng", "PRNGKey", "SeedSequence"}
NAMING_CALLS = {"getattr": 1, "hasattr": 1, "setattr": 1, "delattr": 1, "import_module": 0, "__import__": 0,
                "open": 0, "Path": 0, "encode": 0, "decode": 0, "astype": 0}  # callee -> the argument that names
# code, a file, an encoding or a type
NAMING_KEYWORDS = {"dtype", "encoding", "errors", "mode", "method"}
SMALL = 10  # integers below this (in size) are single digits: see the module's docstring
ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
NO_NEW_LITERALS = ("setup() and the module-level values it reads hold no literal to change (0, 1, booleans, None, "
                   "docstrings and names of attributes, modules or files are kept)")


@dataclass(frozen=True)
class Change:
    scope: str  # "setup()" or "module level"
    line: int
    text: str  # e.g. "random.seed(42) -> 43", "N_PAIRS = 1000 -> 1010"


@dataclass(frozen=True)
class Variant:
    name: str  # which literals it changes (SETS)
    source: str  # the whole workload file, setup's literals changed
    changes: tuple[Change, ...]

    def describe(self) -> str:
        """What changed, by scope: "setup(): random.seed(42) -> 43; module level: N_PAIRS = 1000 -> 1010"."""
        scopes: dict[str, dict[str, int]] = {}
        for change in self.changes:
            texts = scopes.setdefault(change.scope, {})
            texts[change.text] = texts.get(change.text, 0) + 1
        return "; ".join(f"{scope}: " + ", ".join(text + (f" ({n}x)" if n > 1 else "") for text, n in texts.items())
                         for scope, texts in scopes.items())


@dataclass(frozen=True)
class Variants:
    variants: tuple[Variant, ...]
    note: str | None = None  # why there are none


class Site(NamedTuple):
    """A literal perfagent may change: its node, where it hangs (parent, field, index) and whether it is a seed."""
    node: ast.AST
    parent: ast.AST | None
    field: str | None
    index: int | None
    seed: bool


def make_variants(source: str) -> Variants:
    """The variants of a workload file's source (Python defining setup() and workload()), in the order of SETS,
    none that another one or the original already is."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "perturbed_setup" in functions:
        return Variants((), "the file defines perturbed_setup(), its own input of the same kind")
    scopes = _scopes(tree, functions["setup"])
    made, seen = [], {source}
    for name, kinds in SETS:
        edits = [edit for scope, node in scopes for edit in _edits(source, scope, node, kinds)]
        variant = Variant(name, _apply(source, [(node, text) for node, text, _ in edits]),
                          tuple(change for _, _, change in edits))
        if variant.source not in seen:
            seen.add(variant.source)
            made.append(variant)
    return Variants(tuple(made), None if made else NO_NEW_LITERALS)


def _scopes(tree: ast.Module, setup: ast.FunctionDef) -> list[tuple[str, ast.AST]]:
    """What a variant may edit: setup()'s default arguments and body, and the module-level assignments whose names
    setup() reads without assigning them (and those their values read, in turn)."""
    loaded = {n.id for n in ast.walk(setup) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stored = {n.id for n in ast.walk(setup) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    reads = loaded - stored - {a.arg for a in ast.walk(setup.args) if isinstance(a, ast.arg)}
    assignments = [s for s in tree.body if isinstance(s, (ast.Assign, ast.AnnAssign)) and s.value is not None and
                   all(isinstance(t, ast.Name) for t in _targets(s))]
    chosen: list[ast.stmt] = []
    while True:
        new = [s for s in assignments if s not in chosen and any(t.id in reads for t in _targets(s))]
        if not new:
            break
        chosen += new
        reads |= {n.id for s in new for n in ast.walk(s.value) if isinstance(n, ast.Name)}
    chosen.sort(key=lambda s: s.lineno)
    return [("setup()", setup.args), *(("setup()", s) for s in setup.body), *(("module level", s) for s in chosen)]


def _targets(statement: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return statement.targets if isinstance(statement, ast.Assign) else [statement.target]


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _seedy(name: str | None) -> bool:
    return bool(name) and any(word in name.lower() for word in SEED_WORDS)


def _is_seed(parent: ast.AST, field: str) -> bool:
    """Whether the literals in `parent`'s `field` seed a random generator."""
    if isinstance(parent, ast.Call):
        return field == "args" and (_seedy(_callee(parent)) or _callee(parent) in SEED_CALLS)
    if isinstance(parent, ast.keyword):
        return _seedy(parent.arg)
    if isinstance(parent, (ast.Assign, ast.AnnAssign)):
        return field == "value" and any(_seedy(t.id) for t in _targets(parent) if isinstance(t, ast.Name))
    return False


def _names_code(parent: ast.AST | None, field: str | None, index: int | None) -> bool:
    """Whether a string at this place names an attribute, a module, a file, a key or a type: changing it changes the
    code that runs, or what it finds, rather than the data it runs on."""
    if isinstance(parent, (ast.Subscript, ast.Dict)):
        return field in ("slice", "keys")
    if isinstance(parent, ast.keyword):
        return parent.arg in NAMING_KEYWORDS
    return isinstance(parent, ast.Call) and field == "args" and NAMING_CALLS.get(_callee(parent)) == index


def _number(node: ast.AST) -> int | float | None:
    """The value of a literal number or of arithmetic on literals (10**8, -5, 2 * 1000); None for anything else."""
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) in (int, float) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(node.operand)
        return None if value is None else -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None or isinstance(node.op, ast.Pow) and not (
                isinstance(right, int) and 0 <= right <= 256 and abs(left) <= 2 ** 32):  # no huge powers to compute
            return None
        try:
            value = ARITHMETIC[type(node.op)](left, right)
        except ArithmeticError:
            return None
        return value if type(value) in (int, float) else None
    return None


def _sites(node: ast.AST, parent: ast.AST | None = None, field: str | None = None, index: int | None = None,
           seed: bool = False) -> Iterator[Site]:
    """The literals under `node` a variant may change, each taken whole (10**8 is one literal, an f-string one)."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return  # a docstring, or a statement with no effect
    text = isinstance(node, ast.JoinedStr) or isinstance(node, ast.Constant) and isinstance(node.value, str)
    if text or _number(node) is not None:
        if not (text and _names_code(parent, field, index)):
            yield Site(node, parent, field, index, seed)
        return
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "format_spec", "decorator_list"):
            continue
        for i, child in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(child, ast.AST):
                yield from _sites(child, node, name, i if isinstance(value, list) else None, _is_seed(node, name))


def _new_number(value: int | float, seed: bool) -> tuple[str, int | float] | None:
    """(kind, new value) for a number, or None when it stays."""
    if seed and isinstance(value, int):
        return "seed", value + 1
    if isinstance(value, float):
        return ("number", _nudged_float(value)) if value else None
    if abs(value) < 2:
        return None
    step = max(1, abs(value) // 100) if abs(value) >= SMALL else 1
    return "number" if abs(value) >= SMALL else "small", value + step if value > 0 else value - step


def _nudged_float(value: float) -> float:
    """About 1% further from zero, in as few significant digits as still differ from `value`."""
    for digits in range(2, 18):
        new = float(f"{value * 1.01:.{digits}g}")
        if new != value:
            return new
    return value * 1.01


def _new_string(value: str) -> str | None:
    """`value` with its last ASCII letter (else digit) turned into the next one of its class; None if it has none."""
    for alphabet in ((string.ascii_lowercase, string.ascii_uppercase), (string.digits,)):
        for i in reversed(range(len(value))):
            for letters in alphabet:
                if value[i] in letters:
                    return value[:i] + letters[(letters.index(value[i]) + 1) % len(letters)] + value[i + 1:]
    return None


def _int_text(old_text: str, new: int) -> str:
    """`new` written as `old_text` was: the same base, underscores if it had them."""
    sign, digits = ("-", old_text[1:].lstrip()) if old_text.startswith("-") else ("", old_text)
    size = abs(new)
    prefix = digits[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        return sign + digits[:2] + format(size, {"0x": "x", "0o": "o", "0b": "b"}[prefix])
    return sign + (f"{size:_}" if "_" in digits else str(size))


def _number_text(site: Site, old_text: str, kinds: set[str]) -> str | None:
    """The new text of a number site, or None when its kind is not in `kinds`."""
    value = _number(site.node)
    changed = _new_number(value, site.seed)
    if changed is None or changed[0] not in kinds:
        return None
    new = changed[1]
    if isinstance(new, float):
        return repr(new)
    literal = site.node.operand if isinstance(site.node, ast.UnaryOp) else site.node
    if isinstance(literal, ast.Constant):
        return _int_text(old_text, new)
    text = f"{old_text} {'+' if new > value else '-'} {abs(new - value)}"  # 10**8 + 1000000: still readable
    binds = isinstance(site.parent, (ast.BinOp, ast.UnaryOp, ast.Attribute)) or (
        isinstance(site.parent, ast.Subscript) and site.field == "value")
    return f"({text})" if binds else text


def _string_text(old_text: str, value: str, kinds: set[str]) -> str | None:
    """The new text of a string literal, its quotes, prefix and escapes kept; None when it stays."""
    new = _new_string(value) if "string" in kinds else None
    if new is None:
        return None
    i = next(i for i, (a, b) in enumerate(zip(value, new)) if a != b)
    for j in reversed(range(len(old_text))):  # the source character that is value[i], not part of an escape
        if old_text[j] == value[i]:
            candidate = old_text[:j] + new[i] + old_text[j + 1:]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if ast.literal_eval(f"({candidate})") == new:
                        return candidate
            except (ValueError, SyntaxError):
                continue
    return None if "\n" in old_text else repr(new)


def _fstring_text(site: Site, old_text: str, kinds: set[str]) -> str | None:
    """The new text of an f-string: its text parts and the literals in its expressions changed, unparsed whole."""
    if "\n" in old_text:
        return None  # unparsed on one line, it would move every later line
    node = copy.deepcopy(site.node)
    changed = False
    for i, part in enumerate(node.values):
        if isinstance(part, ast.Constant):
            new = _new_string(part.value) if "string" in kinds else None
            if new is not None:
                node.values[i] = ast.Constant(new)
                changed = True
            continue
        for inner in list(_sites(part.value, part, "value", None)):
            text = _site_text(inner, ast.unparse(inner.node), kinds)
            if text is not None:
                replacement = ast.parse(text, mode="eval").body
                holder = getattr(inner.parent, inner.field)
                if inner.index is None:
                    setattr(inner.parent, inner.field, replacement)
                else:
                    holder[inner.index] = replacement
                changed = True
    return ast.unparse(node) if changed else None


def _site_text(site: Site, old_text: str, kinds: set[str]) -> str | None:
    if isinstance(site.node, ast.JoinedStr):
        return _fstring_text(site, old_text, kinds)
    if isinstance(site.node, ast.Constant) and isinstance(site.node.value, str):
        return _string_text(old_text, site.node.value, kinds)
    return _number_text(site, old_text, kinds)


def _describe(site: Site, before: str, after: str, source: str) -> str:
    """A change in its context: "N_PAIRS = 1000 -> 1010", "random.seed(42) -> 43", "j % 3: 3 -> 4"."""
    parent, before, after = site.parent, _one_line(before), _one_line(after)
    if isinstance(parent, (ast.Assign, ast.AnnAssign)) and site.field == "value":
        return f"{' = '.join(ast.unparse(t) for t in _targets(parent))} = {before} -> {after}"  # x, a[0], o.k
    if isinstance(parent, ast.keyword):
        return f"{parent.arg}={before} -> {after}"
    if isinstance(parent, ast.arguments):  # a default: of the last positional arguments, or of a keyword-only one
        names = parent.kwonlyargs if site.field == "kw_defaults" else \
            (parent.posonlyargs + parent.args)[-len(parent.defaults):]
        return f"{names[site.index].arg}={before} -> {after}"
    context = _one_line(ast.get_source_segment(source, parent)) if isinstance(parent, ast.expr) else ""
    if isinstance(parent, ast.Call):
        context = context if len(context) <= 50 else f"{_one_line(ast.unparse(parent.func))}(...)"
        return f"{context} -> {after}" if len(parent.args) == 1 and not parent.keywords else \
            f"{context}: {before} -> {after}"
    short = isinstance(parent, (ast.BinOp, ast.UnaryOp, ast.Compare)) and len(context) <= 30
    return f"{context}: {before} -> {after}" if short else f"{before} -> {after}"


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n")


def _edits(source: str, scope: str, root: ast.AST, kinds: set[str]) -> Iterator[tuple[ast.AST, str, Change]]:
    """(node, its new text, the change described) for each literal under `root` that `kinds` changes."""
    for site in _sites(root):
        before = ast.get_source_segment(source, site.node)
        after = _site_text(site, before, kinds)
        if after is not None:
            yield site.node, after, Change(scope, site.node.lineno, _describe(site, before, after, source))


def _apply(source: str, edits: list[tuple[ast.AST, str]]) -> str:
    """`source` with each node's text replaced (ast positions count UTF-8 bytes from each line's start)."""
    data = source.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for node, text in sorted(edits, key=lambda edit: (edit[0].lineno, edit[0].col_offset), reverse=True):
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        data = data[:start] + text.encode() + data[end:]
    return data.decode()
