"""The rules of the house (issue 10), read from the source with ``ast`` so that nothing is
imported: imports point down the floors, the SageMaker library stays alone, there are no import
cycles, no module is over 600 lines, few modules sit at the top, and no module reaches for
another module's private names.

Each failure names the file, the import and the rule. The fix is to move the code to the room it
belongs in, or to pass what it needs down as an argument, not to loosen the data below: FLOORS is
the layout that the README's "How it works" describes, so change both together or neither."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "sm_pytest"

MAX_LINES = 600
MAX_TOP_MODULES = 12


@dataclass(frozen=True)
class Floor:
    name: str
    rooms: tuple[str, ...]
    # Whether the rooms of this floor may import each other (a room may always import itself).
    siblings: bool = False


# Top of the house to the bottom. A room is a module or a package; a module may import its own
# room and any room on a lower floor.
FLOORS = (
    # plugin.py is the entry point; it registers the options, the collection items and the
    # --sm hooks. cli.py stands alone.
    Floor("the pytest glue",
          ("sm_pytest.plugin", "sm_pytest.cli", "sm_pytest.options", "sm_pytest.items",
           "sm_pytest.sagemaker_hooks", "sm_pytest.terminal"),
          siblings=True),
    Floor("the composition root", ("sm_pytest.session",)),
    # None of the three imports another today: the gate, the run cache and the summary each read
    # the records of model.py, and keeping them apart keeps each replaceable (MLflow, a new gate).
    Floor("what happens after a run", ("sm_pytest.report", "sm_pytest.gating", "sm_pytest.store")),
    Floor("the backends", ("sm_pytest.backends",)),
    Floor("the SageMaker library", ("sm_pytest.sagemaker",)),
    Floor("one run on this machine", ("sm_pytest.run",)),
    Floor("the records between the layers", ("sm_pytest.model",)),
    Floor("experiment files", ("sm_pytest.spec",)),
    Floor("text helpers", ("sm_pytest.messages",)),
    Floor("the package root", ("sm_pytest",)),
)

# The SageMaker library is usable without pytest: it never reaches up into the glue, the
# composition root, the backends or what happens after a run.
SAGEMAKER = "sm_pytest.sagemaker"
SAGEMAKER_NEVER_IMPORTS = (
    "sm_pytest.plugin", "sm_pytest.session", "sm_pytest.cli", "sm_pytest.items",
    "sm_pytest.options", "sm_pytest.sagemaker_hooks", "sm_pytest.backends", "sm_pytest.gating",
    "sm_pytest.store",
    "sm_pytest.report", "sm_pytest.terminal",
)


# --- the checker ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    importer: str        # dotted name of the importing module
    path: str            # its file, relative to the folder above the package
    line: int
    statement: str       # the import as written
    target: str          # the module it loads
    names: tuple[str, ...]  # names taken from target that are not modules themselves
    type_only: bool      # under ``if TYPE_CHECKING:``
    lazy: bool           # inside a function


@dataclass
class Module:
    name: str
    path: Path
    rel: str
    is_package: bool
    tree: ast.Module
    lines: int


def read_package(package_dir: Path) -> dict[str, Module]:
    """Every module of the package, parsed, by dotted name."""
    modules = {}
    base = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        modules[name] = Module(name, path, path.relative_to(base).as_posix(), is_package,
                               ast.parse(text, filename=str(path)), len(text.splitlines()))
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.name.split(".")
    if not module.is_package:
        parts.pop()
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: Module, known: set[str], package: str) -> list[Import]:
    """The package's own imports in one module, lazy and type-only ones included."""
    found: list[Import] = []

    def add(node, target, names, type_only, lazy):
        found.append(Import(module.name, module.rel, node.lineno, ast.unparse(node), target,
                            tuple(names), type_only, lazy))

    def visit(node: ast.AST, type_only: bool, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    add(node, alias.name, (), type_only, lazy)
            return
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if source != package and not source.startswith(package + "."):
                return
            plain = []
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    add(node, f"{source}.{alias.name}", (), type_only, lazy)
                else:
                    plain.append(alias.name)
            if plain:
                add(node, source, plain, type_only, lazy)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True, lazy)
            for child in node.orelse:
                visit(child, type_only, lazy)
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only, inner)

    visit(module.tree, False, False)
    return found


def room_of(name: str, floors=FLOORS) -> tuple[int, str] | None:
    """(floor index, room) of a module: the longest room that holds it. The package root holds
    only its own ``__init__``, so that a new top-level module has to be given a floor."""
    best = None
    for index, floor in enumerate(floors):
        for room in floor.rooms:
            holds = name == room or (name.startswith(room + ".") and "." in room)
            if holds and (best is None or len(room) > len(best[1])):
                best = (index, room)
    return best


def _where(imp: Import) -> str:
    how = " (lazy)" if imp.lazy else " (type-only)" if imp.type_only else ""
    return f"{imp.path}:{imp.line}: `{imp.statement}`{how}"


def layer_violations(package_dir: Path, floors=FLOORS) -> list[str]:
    modules = read_package(package_dir)
    package = package_dir.name
    problems = []
    for module in modules.values():
        if room_of(module.name, floors) is None:
            problems.append(f"{module.rel}: {module.name} is in no room of FLOORS in"
                            " tests/test_house.py; rule: every module has a floor. Put it in an"
                            " existing subpackage, or add its room to FLOORS and the README.")
    for module in modules.values():
        mine = room_of(module.name, floors)
        if mine is None:
            continue
        for imp in imports_of(module, set(modules), package):
            theirs = room_of(imp.target, floors)
            if theirs is None:
                if imp.target not in modules:
                    problems.append(f"{_where(imp)}: {imp.target} does not exist in the"
                                    " package; rule: imports point down to real modules.")
                continue
            if theirs[1] == mine[1] or theirs[0] > mine[0]:
                continue
            floor = floors[mine[0]]
            if theirs[0] == mine[0] and floor.siblings:
                continue
            where = "the same floor" if theirs[0] == mine[0] else "a higher floor"
            problems.append(
                f"{_where(imp)}: {mine[1]} ({floor.name}) imports {imp.target}, which is on"
                f" {where} ({floors[theirs[0]].name}); rule: imports point down only. Move"
                " the shared code down to a lower room, or pass it in from above.")
    return problems


def sagemaker_violations(package_dir: Path) -> list[str]:
    modules = read_package(package_dir)
    problems = []
    for module in modules.values():
        if module.name != SAGEMAKER and not module.name.startswith(SAGEMAKER + "."):
            continue
        for imp in imports_of(module, set(modules), package_dir.name):
            for banned in SAGEMAKER_NEVER_IMPORTS:
                if imp.target == banned or imp.target.startswith(banned + "."):
                    problems.append(
                        f"{_where(imp)}: the SageMaker library imports {imp.target}; rule:"
                        " sagemaker/ is the AWS library alone and never imports the glue,"
                        " the session, the backends, gating, store or report. Let the caller"
                        " pass it in.")
    return problems


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def _one_cycle(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from start back to start inside one strongly connected group."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & group):
                if other == start:
                    return paths[node] + [start]
                if other not in paths:
                    paths[other] = paths[node] + [other]
                    following.append(other)
        frontier = following
    return [start]


def cycle_violations(package_dir: Path) -> list[str]:
    modules = read_package(package_dir)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    first: dict[tuple[str, str], Import] = {}
    for module in modules.values():
        for imp in imports_of(module, set(modules), package_dir.name):
            if imp.type_only or imp.target not in modules or imp.target == module.name:
                continue
            graph[module.name].add(imp.target)
            first.setdefault((module.name, imp.target), imp)
    problems = []
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        cycle = _one_cycle(group[0], set(group), graph)
        steps = "; ".join(_where(first[(a, b)]) for a, b in zip(cycle, cycle[1:], strict=False))
        problems.append(f"import cycle {' -> '.join(cycle)}: {steps}; rule: no import cycles"
                        " (imports under `if TYPE_CHECKING:` do not count, lazy ones do). Move"
                        " what both need into a lower module.")
    return problems


def length_violations(package_dir: Path, most: int = MAX_LINES) -> list[str]:
    return [f"{module.rel}: {module.lines} lines; rule: no module over {most} lines. Split it"
            " by concern (a package with one module per part)."
            for module in read_package(package_dir).values() if module.lines > most]


def top_module_violations(package_dir: Path, most: int = MAX_TOP_MODULES) -> list[str]:
    # __init__.py is the package itself, not a module sitting beside the others.
    top = sorted(p.name for p in package_dir.glob("*.py") if p.name != "__init__.py")
    if len(top) <= most:
        return []
    return [f"{package_dir.name}/: {len(top)} modules sit directly in the package"
            f" ({', '.join(top)}); rule: at most {most}. Move some into the subpackage of"
            " their concern."]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _methods(cls: ast.ClassDef):
    return [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _first_parameter(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    decorators = {(_dotted(d) or [""])[-1] for d in function.decorator_list}
    positional = [*function.args.posonlyargs, *function.args.args]
    if "staticmethod" in decorators or not positional:
        return None
    return positional[0].arg


def _class_members(tree: ast.Module) -> dict[str, set[str]]:
    """The private names of each class of a module, by class name: its methods and class
    attributes, and what its methods set on their own instance or class (``self._x = ...``)."""
    classes: dict[str, set[str]] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        members = classes.setdefault(cls.name, set())
        for node in cls.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                members.update(t.id for t in targets if isinstance(t, ast.Name))
        for method in _methods(cls):
            me = _first_parameter(method)
            members.update(
                node.attr for node in ast.walk(method)
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == me)
        classes[cls.name] = {m for m in members if _private(m)}
    return classes


def _private_members(tree: ast.Module) -> set[str]:
    """The private names defined inside the classes of a module."""
    return set().union(*_class_members(tree).values())


def _own_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _annotated_class(node: ast.expr | None) -> str | None:
    """The class an annotation names, as written: ``Foo``, ``mod.Foo``, ``"Foo"``,
    ``Foo | None``, ``Optional[Foo]``; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [s for s in (node.left, node.right)
                 if not (isinstance(s, ast.Constant) and s.value is None)]
        return _annotated_class(sides[0]) if len(sides) == 1 else None
    if isinstance(node, ast.Subscript) and (_dotted(node.value) or [""])[-1] == "Optional":
        return _annotated_class(node.slice)
    if isinstance(node, (ast.Name, ast.Attribute)):
        chain = _dotted(node)
        return ".".join(chain) if chain else None
    return None


def _made_class(value: ast.expr | None) -> str | None:
    """The class a value is an instance of when it is made right there: ``Foo(...)``."""
    if isinstance(value, ast.Call) and isinstance(value.func, (ast.Name, ast.Attribute)):
        chain = _dotted(value.func)
        return ".".join(chain) if chain else None
    return None


def _bindings(nodes: list[ast.AST], me: str | None = None) -> dict[str, str]:
    """What each name (or, with ``me``, each ``me.<attribute>``) holds, where the code says:
    an annotation, or an instance made in the assignment. A name bound two ways is dropped."""
    seen: dict[str, set[str]] = {}

    def bind(target: ast.expr, written: str | None) -> None:
        if isinstance(target, ast.Name) and me is None:
            key = target.id
        elif (me is not None and isinstance(target, ast.Attribute)
              and isinstance(target.value, ast.Name) and target.value.id == me):
            key = target.attr
        else:
            return
        seen.setdefault(key, set()).add(written or "?")

    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.AnnAssign):
                bind(node.target, _annotated_class(node.annotation))
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                bind(node.targets[0], _made_class(node.value))
    return {k: v.pop() for k, v in seen.items() if len(v) == 1 and "?" not in v}


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of a body that run there, not the functions and classes it defines."""
    return [n for n in body
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    args = function.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return {a.arg: c for a in every if (c := _annotated_class(a.annotation))}


def private_violations(package_dir: Path) -> list[str]:
    modules = read_package(package_dir)
    known = set(modules)
    rule = ("rule: no module uses another module's private (underscore) names. Make the name"
            " public, with a docstring, in the module that owns it.")
    classes = {name: _class_members(m.tree) for name, m in modules.items()}
    problems = []
    for module in modules.values():
        imports = imports_of(module, known, package_dir.name)
        for imp in imports:
            for name in imp.names:
                if _private(name):
                    problems.append(f"{_where(imp)}: takes {name} from {imp.target}; {rule}")
            parent, _, leaf = imp.target.rpartition(".")
            outside = parent not in (module.name, module.name.rpartition(".")[0])
            if not imp.names and _private(leaf) and outside:
                problems.append(f"{_where(imp)}: loads the private module {imp.target}; {rule}")
        problems += _private_accesses(module, modules, classes, imports, rule)
    return sorted(problems, key=_file_and_line)


def _private_accesses(module: Module, modules: dict[str, Module],
                      classes: dict[str, dict[str, set[str]]], imports: list[Import],
                      rule: str) -> list[str]:
    """``x._name`` in ``module`` where ``_name`` is private to another module: a module's
    attribute, or a member of another module's class."""
    known = set(modules)
    problems: list[str] = []
    # Names bound to the package's modules, e.g. `from sm_pytest.sagemaker import uploads`,
    # and names taken from them, e.g. `from sm_pytest.session import SmSession`.
    bound: dict[str, str] = {}
    taken: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif source in known:
                    taken[alias.asname or alias.name] = _home_of(modules, source, alias.name)
    members = {}
    for imp in imports:
        if imp.target in modules and imp.target != module.name:
            for member in _private_members(modules[imp.target].tree):
                members.setdefault(member, imp.target)
    # A name the module also defines for itself may be its own: only an access whose
    # object is known to be another module's class counts then.
    members = {m: owner for m, owner in members.items()
               if m not in _own_names(module.tree)}

    def class_of(written: str | None) -> tuple[str, str] | None:
        """(module, class) for a class named as ``module`` writes it, when known."""
        if not written:
            return None
        head, _, rest = written.partition(".")
        if not rest:
            if head in classes[module.name]:
                return module.name, head
            home = taken.get(head)
            return (home, head) if home and head in classes.get(home, {}) else None
        if head in bound:
            owner, _, name = ".".join([bound[head], rest]).rpartition(".")
            if owner in known:
                home = _home_of(modules, owner, name)
                return (home, name) if name in classes.get(home, {}) else None
        return None

    def check(node: ast.Attribute, names: dict[str, str], own: dict[str, str],
              me: str | None) -> None:
        chain = _dotted(node.value)
        if chain and chain[0] in bound:
            owner = ".".join([bound[chain[0]], *chain[1:]])
            if owner in known and owner != module.name:
                problems.append(f"{module.rel}:{node.lineno}: `{ast.unparse(node)}` uses"
                                f" {node.attr} of {owner}; {rule}")
                return
        if chain is not None and len(chain) == 1 and chain[0] == me:
            return
        written = None
        if chain is not None and len(chain) == 1:
            written = names.get(chain[0])
        elif chain is not None and len(chain) == 2 and chain[0] == me:
            written = own.get(chain[1])
        known_class = class_of(written)
        if known_class is not None and known_class[0] == module.name:
            return  # an instance of its own class
        if known_class is not None and node.attr in classes[known_class[0]][known_class[1]]:
            home, cls = known_class
            problems.append(f"{module.rel}:{node.lineno}: `{ast.unparse(node)}` uses the"
                            f" private member {node.attr} of {cls} in {home}; {rule}")
            return
        if node.attr in members and chain not in (["self"], ["cls"]):
            problems.append(f"{module.rel}:{node.lineno}: `{ast.unparse(node)}` uses the"
                            f" private member {node.attr} of a class in"
                            f" {members[node.attr]}; {rule}")

    def visit(node: ast.AST, names: dict[str, str], own: dict[str, str],
              me: str | None, in_class: bool) -> None:
        if isinstance(node, ast.ClassDef):
            own = _bindings(_statements(node.body))
            for method in _methods(node):
                if first := _first_parameter(method):
                    own.update(_bindings(method.body, first))
            for child in node.body:
                visit(child, names, own, None, True)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = {**names, **_bindings(node.body), **_parameters(node)}
            if in_class:
                me = _first_parameter(node)
            defaults = [d for d in (*node.args.defaults, *node.args.kw_defaults) if d]
            for child in [*node.decorator_list, *defaults, *node.body]:
                visit(child, names, own, me, False)
            return
        if isinstance(node, ast.Attribute) and _private(node.attr):
            check(node, names, own, me)
        for child in ast.iter_child_nodes(node):
            visit(child, names, own, me, in_class)

    visit(module.tree, _bindings(_statements(module.tree.body)), {}, None, False)
    return problems


def _home_of(modules: dict[str, Module], source: str, name: str, hops: int = 5) -> str:
    """The module that defines ``name``, following re-exports (a package's ``__init__``
    importing it from its part) from ``source``."""
    module = modules.get(source)
    if module is None or hops == 0:
        return source
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return source
    for node in module.tree.body:
        if isinstance(node, ast.ImportFrom) and any(
                (a.asname or a.name) == name and a.name == name for a in node.names):
            return _home_of(modules, _absolute(module, node), name, hops - 1)
    return source


def _file_and_line(problem: str) -> tuple[str, int]:
    path, _, rest = problem.partition(":")
    line = rest.partition(":")[0]
    return path, int(line) if line.isdigit() else 0


def _report(problems: list[str]) -> str:
    return f"{len(problems)} broken:\n" + "\n".join(problems)


# --- the house ------------------------------------------------------------------------------

def test_imports_point_down():
    problems = layer_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_sagemaker_library_stands_alone():
    problems = sagemaker_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_no_import_cycles():
    problems = cycle_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_no_module_over_600_lines():
    problems = length_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_few_modules_at_the_top():
    problems = top_module_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_no_module_uses_another_modules_private_names():
    problems = private_violations(PACKAGE_DIR)
    assert not problems, _report(problems)


def test_every_room_of_floors_exists():
    """A room left in FLOORS after its module moved away would mislead the next reader."""
    modules = read_package(PACKAGE_DIR)
    missing = sorted(room for floor in FLOORS for room in floor.rooms if room not in modules)
    assert not missing, f"rooms in FLOORS with no module or package: {missing}; remove them"


# --- the checker itself, on a tiny house with one broken rule each ---------------------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "sm_pytest"


def _tiny_house(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    files = {
        "sm_pytest/__init__.py": "",
        "sm_pytest/messages.py": "def _hidden():\n    return 1\n",
        "sm_pytest/model.py": "from sm_pytest import messages\n",
        "sm_pytest/session.py": "from sm_pytest.model import *\n",
        "sm_pytest/spec/__init__.py": "",
        "sm_pytest/spec/experiment_file.py": "from sm_pytest import messages\n",
        "sm_pytest/run/__init__.py": "",
        "sm_pytest/run/a.py": "from sm_pytest.run import c\n",
        "sm_pytest/run/c.py": ("from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from sm_pytest.run import a\n"),
        "sm_pytest/sagemaker/__init__.py": "",
        "sm_pytest/sagemaker/aws.py": "from sm_pytest.run.a import *\n",
        "sm_pytest/backends/__init__.py": "",
        "sm_pytest/backends/base.py": "from sm_pytest.sagemaker import aws\n",
        "sm_pytest/gating/__init__.py": "",
        "sm_pytest/gating/gate.py": "import sm_pytest.spec.experiment_file\n",
        "sm_pytest/store/__init__.py": "",
        "sm_pytest/store/sqlite.py": "",
    }
    files.update(extra or {})
    return _write(tmp_path, files)


def test_checker_passes_a_clean_house(tmp_path):
    house = _tiny_house(tmp_path)
    assert layer_violations(house) == []
    assert sagemaker_violations(house) == []
    assert cycle_violations(house) == []  # a -> c, and c -> a only for type checking
    assert length_violations(house) == []
    assert top_module_violations(house) == []
    assert private_violations(house) == []


def test_checker_catches_an_upward_lazy_import(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/spec/experiment_file.py": "def load():\n    from sm_pytest.model import X\n"})
    [problem] = layer_violations(house)
    assert problem.startswith(
        "sm_pytest/spec/experiment_file.py:2: `from sm_pytest.model import X`")
    assert "(lazy)" in problem and "imports point down only" in problem
    assert "sm_pytest.spec (experiment files) imports sm_pytest.model" in problem


def test_checker_catches_imports_between_rooms_of_one_floor(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/store/sqlite.py": "from sm_pytest.gating import gate\n"})
    [problem] = layer_violations(house)
    assert "sm_pytest/store/sqlite.py:1:" in problem and "the same floor" in problem


def test_checker_catches_a_module_in_no_room(tmp_path):
    house = _tiny_house(tmp_path, {"sm_pytest/helpers.py": ""})
    [problem] = layer_violations(house)
    assert problem.startswith("sm_pytest/helpers.py: sm_pytest.helpers is in no room of FLOORS")


def test_checker_catches_the_sagemaker_library_reaching_up(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/sagemaker/aws.py": "from sm_pytest.backends import base\n"})
    [problem] = sagemaker_violations(house)
    assert problem.startswith("sm_pytest/sagemaker/aws.py:1: `from sm_pytest.backends import"
                              " base`: the SageMaker library imports sm_pytest.backends.base")
    assert len(layer_violations(house)) == 1  # it is also an upward import


def test_checker_catches_a_cycle_through_a_lazy_import(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/run/c.py": "def later():\n    from sm_pytest.run import a\n"})
    [problem] = cycle_violations(house)
    assert problem.startswith("import cycle sm_pytest.run.a -> sm_pytest.run.c -> sm_pytest.run.a:")
    assert "sm_pytest/run/a.py:1: `from sm_pytest.run import c`" in problem
    assert "sm_pytest/run/c.py:2: `from sm_pytest.run import a` (lazy)" in problem


def test_checker_catches_a_long_module(tmp_path):
    house = _tiny_house(tmp_path, {"sm_pytest/store/sqlite.py": "x = 1\n" * 601})
    assert length_violations(house) == [
        "sm_pytest/store/sqlite.py: 601 lines; rule: no module over 600 lines. Split it by"
        " concern (a package with one module per part)."]
    house = _tiny_house(tmp_path, {"sm_pytest/store/sqlite.py": "x = 1\n" * 600})
    assert length_violations(house) == []


def test_checker_catches_too_many_top_modules(tmp_path):
    house = _tiny_house(tmp_path)
    assert top_module_violations(house, most=3) == []
    assert top_module_violations(house, most=2) == [
        "sm_pytest/: 3 modules sit directly in the package (messages.py, model.py, session.py);"
        " rule: at most 2. Move some into the subpackage of their concern."]


def test_checker_catches_private_names(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/model.py": "from sm_pytest import messages\nmessages._hidden()\n",
        "sm_pytest/gating/gate.py": "from sm_pytest.messages import _hidden\n",
        "sm_pytest/run/a.py": "class Box:\n    def _peek(self):\n        return self._peek\n",
        "sm_pytest/run/c.py": "from sm_pytest.run.a import Box\n\ndef f(box):\n"
                              "    return box._peek()\n",
    })
    problems = private_violations(house)
    assert len(problems) == 3, problems
    assert problems[0].startswith("sm_pytest/gating/gate.py:1: `from sm_pytest.messages import"
                                  " _hidden`: takes _hidden from sm_pytest.messages")
    assert problems[1].startswith("sm_pytest/model.py:2: `messages._hidden` uses _hidden of"
                                  " sm_pytest.messages")
    assert problems[2].startswith("sm_pytest/run/c.py:4: `box._peek` uses the private member"
                                  " _peek of a class in sm_pytest.run.a")


def test_checker_catches_private_attributes_set_in_init(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/run/a.py": "class Box:\n    def __init__(self):\n        self._cache = None\n",
        "sm_pytest/run/c.py": "from sm_pytest.run.a import Box\n\ndef f(box):\n"
                              "    return box._cache\n",
    })
    [problem] = private_violations(house)
    assert problem.startswith("sm_pytest/run/c.py:4: `box._cache` uses the private member"
                              " _cache of a class in sm_pytest.run.a")


# c.py has a _cache of its own (Mine), so the name alone no longer tells whose it is.
_OWN_CACHE = ("class Mine:\n"
              "    def __init__(self):\n"
              "        self._cache = None\n"
              "        self.box = Box()\n"
              "    def same(self, other):\n"
              "        return other._cache\n")


def test_checker_catches_a_private_member_that_the_importer_also_defines(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/run/__init__.py": "from sm_pytest.run.a import Box\n",
        "sm_pytest/run/a.py": "class Box:\n    def __init__(self):\n        self._cache = None\n",
        "sm_pytest/run/c.py": (
            "from sm_pytest.run import Box\n" + _OWN_CACHE
            + "    def peek(self):\n        return self.box._cache\n"  # line 9
            "def f(box: Box | None):\n    return box._cache\n"  # line 11
            "def g():\n    box = Box()\n    return box._cache\n"  # line 14
            "def h(mine: Mine):\n    return mine._cache, Mine()._cache\n"),  # its own
    })
    problems = private_violations(house)
    assert [p.split(" rule:")[0] for p in problems] == [
        "sm_pytest/run/c.py:9: `self.box._cache` uses the private member _cache of Box in"
        " sm_pytest.run.a;",
        "sm_pytest/run/c.py:11: `box._cache` uses the private member _cache of Box in"
        " sm_pytest.run.a;",
        "sm_pytest/run/c.py:14: `box._cache` uses the private member _cache of Box in"
        " sm_pytest.run.a;",
    ], problems


def test_checker_leaves_a_module_its_own_private_attributes(tmp_path):
    house = _tiny_house(tmp_path, {
        "sm_pytest/run/a.py": "class Box:\n    def __init__(self):\n        self._cache = None\n",
        # Mine reads its own instances' _cache, an untyped `other` included: no type says
        # whose it is, so the module's own definition decides.
        "sm_pytest/run/c.py": "from sm_pytest.run.a import Box\n" + _OWN_CACHE
                              + "def h(mine: Mine):\n    return mine._cache\n",
    })
    assert private_violations(house) == []
