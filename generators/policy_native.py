"""Policies of the common shape evaluated in Python, as the Rego engine evaluates them: 50-100× faster.

The Rego engine (rego-cpp, :mod:`generators.policy_engine`) costs about 0.6 ms a spec: half turning the
input document into its terms, half the query. A first build or a cold ``nthlayer validate`` of 10,000
specs spends 4-5 s there. Most policies, the shipped ones included, have one shape: ``deny`` and
``warn`` rules that walk the input with ``some … in``, compare, and format a message. This module
parses that shape (and only it) and evaluates it over the input document as a Python dict.

It is an accelerator, not a second authority:

- :func:`compile_policies` returns ``None`` unless every module of the set is in the subset below; the
  engine then evaluates everything, as before. The engine still compiles every set (its errors are the
  ones users see), and evaluates every document this module declines.
- Evaluating a document raises :class:`Declined` the moment it meets a value whose treatment by the
  engine is not reproduced here (a float formatted by ``%s``, a cross-type ordering, an object iterated,
  a message the engine would print as broken JSON…): that document goes to the engine.
- tests/test_policy_native.py compares both on the shipped policies, on policies written for each
  construct, and on random documents; ``NTHLAYER_POLICY_ENGINE=rego`` turns this module off.

The subset: ``package``; ``import rego.v1``; rules ``deny contains TERM if { BODY }`` and ``warn
contains …``; body statements ``some v in E``, ``some k, v in E``, ``v := E``, ``not E``, ``E`` and ``E
op E`` (``== != < <= > >=``); terms: ``input`` and bound variables with ``.name`` and ``[E]`` refs,
string, number, boolean and null literals, object literals with string keys, arrays, array
comprehensions ``[E | BODY]``, and the calls ``count``, ``concat`` and ``sprintf`` (``%s %v %d %%``).

What the engine does that is reproduced here, measured on regopy 1.5.2 (the tests pin each):

- an input float reaches the engine as C's ``%f`` text of it (six decimals): 0.1234567 is 0.123457,
  where a float written in the policy keeps its digits (applied where numbers are compared or formatted);
- ``%v`` formats a float as ``%.16g`` (99.99 → ``99.98999999999999``, 100.0 → ``100``);
- ``count`` of a number, ``concat`` of a list holding a non-string, iterating a scalar: undefined;
- ``1 == 1.0`` holds, ``true == 1`` does not;
- a string that is not UTF-8 anywhere in the document fails the whole evaluation (declined here).

Measured: 0.03-0.05 ms a document for the seven shipped policies, where the engine takes 0.6 ms.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Callable, Iterable

import orjson

UNDEF = object()  # a Rego expression with no value


class Declined(Exception):
    """This module does not reproduce the engine here: the engine evaluates it instead."""


class _NotInSubset(Exception):
    pass


def enabled() -> bool:
    """Whether policies of the subset are evaluated here (``NTHLAYER_POLICY_ENGINE=rego``: never)."""
    return os.environ.get("NTHLAYER_POLICY_ENGINE", "") != "rego"


# ---------------------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r]+|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>:=|==|!=|<=|>=|[<>=|,;.()\[\]{}:+\-*/%&])
""", re.VERBOSE)

_KEYWORDS = {"package", "import", "if", "contains", "some", "in", "not", "every", "with", "as", "default",
             "else", "true", "false", "null"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _NotInSubset(f"character {text[position]!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "space":
            continue
        if kind == "string":
            try:
                tokens.append(("string", json.loads(value)))
            except ValueError:
                raise _NotInSubset("string escape") from None
        elif kind == "raw":
            tokens.append(("string", value[1:-1]))
        elif kind == "number":
            tokens.append(("number", _Literal(value) if any(c in value for c in ".eE") else int(value)))
        elif kind == "name":
            tokens.append(("kw" if value in _KEYWORDS else "name", value))
        else:
            tokens.append((kind, value))
    tokens.append(("end", None))
    return tokens


# ---------------------------------------------------------------------------------------------- parser
# Expressions compile to functions env -> value (or UNDEF); statements to functions (env, then) -> None
# that call ``then(env)`` once per way the statement holds. ``env`` is the dict of bound variables of one
# rule's evaluation: a statement binds its variables in it before calling ``then`` and removes them
# after (``then`` uses the bindings at once: a finding's head, a comprehension's item); the parser
# refuses a variable bound twice, so a binding never hides another.

Expr = Callable[[dict], Any]
Stmt = Callable[[dict, Callable[[dict], None]], None]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0  # inside ( [ { of a term: line ends are not statement ends

    def peek(self) -> tuple[str, Any]:
        if self.depth:
            while self.tokens[self.at][0] == "nl":
                self.at += 1
        return self.tokens[self.at]

    def take(self, kind: str, value: Any = None) -> Any:
        token = self.peek()
        if token[0] != kind or (value is not None and token[1] != value):
            raise _NotInSubset(f"expected {value or kind}, found {token[1]!r}")
        self.at += 1
        return token[1]

    def accept(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token[0] == kind and (value is None or token[1] == value):
            self.at += 1
            return True
        return False

    def skip_lines(self) -> None:
        while self.tokens[self.at][0] == "nl" or self.tokens[self.at] == ("op", ";"):
            self.at += 1

    # module := package import* rule*
    def module(self) -> tuple[list[str], list[tuple[str, Expr, Stmt]]]:
        self.skip_lines()
        self.take("kw", "package")
        package = [self.take("name")]
        while self.accept("op", "."):
            package.append(self.take("name"))
        self.end_of_line()
        imports: set[str] = set()
        rules: list[tuple[str, Expr, Stmt]] = []
        while True:
            self.skip_lines()
            if self.peek()[0] == "end":
                break
            if self.accept("kw", "import"):
                parts = [self.take("name")]
                while self.accept("op", "."):
                    parts.append(self.take("name"))
                imports.add(".".join(parts))
                if imports != {"rego.v1"}:
                    raise _NotInSubset("import other than rego.v1")
                self.end_of_line()
                continue
            rules.append(self.rule())
        if "rego.v1" not in imports:
            raise _NotInSubset("no 'import rego.v1'")
        return package, rules

    def end_of_line(self) -> None:
        if self.peek()[0] not in ("nl", "end"):
            raise _NotInSubset(f"unexpected {self.peek()[1]!r}")

    def rule(self) -> tuple[str, Expr, Stmt]:
        name = self.take("name")
        if name not in ("deny", "warn"):
            raise _NotInSubset(f"rule {name}")
        self.take("kw", "contains")
        scope: set[str] = set()
        # The head's term reads variables the body binds: parse the body first, then come back to it.
        head_at = self.at
        self.skip_term()
        self.take("kw", "if")
        self.take("op", "{")
        body = self.body(scope, "}")
        after = self.at
        self.at = head_at
        head = self.expr(scope)
        self.at = after
        self.end_of_line()
        return name, head, body

    def skip_term(self) -> None:
        """Past the rule head's term, without compiling it (its variables are not bound yet)."""
        depth = 0
        while True:
            kind, value = self.tokens[self.at]
            if kind == "end":
                raise _NotInSubset("unfinished rule")
            if depth == 0 and (kind, value) == ("kw", "if"):
                return
            if value in ("(", "[", "{"):
                depth += 1
            elif value in (")", "]", "}"):
                depth -= 1
            self.at += 1

    def body(self, scope: set[str], closing: str) -> Stmt:
        saved, self.depth = self.depth, 0
        statements: list[Stmt] = []
        while True:
            self.skip_lines()
            if self.accept("op", closing):
                break
            statements.append(self.statement(scope))
            if self.tokens[self.at][0] not in ("nl",) and self.tokens[self.at] not in (("op", ";"), ("op", closing)):
                raise _NotInSubset(f"unexpected {self.tokens[self.at][1]!r} after a statement")
        self.depth = saved
        if not statements:
            raise _NotInSubset("empty body")
        return _conjunction(statements)

    def statement(self, scope: set[str]) -> Stmt:
        if self.accept("kw", "some"):
            names = [self.take("name")]
            if self.accept("op", ","):
                names.append(self.take("name"))
            self.take("kw", "in")
            collection = self.expr(scope)
            for name in names:
                if name in scope or name in _RESERVED:
                    raise _NotInSubset(f"variable {name} bound twice")
                scope.add(name)
            return _some(names, collection)
        if self.accept("kw", "not"):
            return _not(self.comparison(scope))
        kind, value = self.peek()
        if kind == "name" and self.tokens[self.at + 1] == ("op", ":="):
            self.at += 2
            expression = self.comparison(scope)
            if value in scope or value in _RESERVED:
                raise _NotInSubset(f"variable {value} bound twice")
            scope.add(value)
            return _assign(value, expression)
        return _holds(self.comparison(scope))

    def comparison(self, scope: set[str]) -> Expr:
        left = self.expr(scope)
        kind, value = self.peek()
        if kind == "op" and value in _COMPARE:
            self.at += 1
            return _compare(value, left, self.expr(scope))
        if kind in ("kw",) and value in ("with", "as", "in", "else"):
            raise _NotInSubset(value)
        return left

    def expr(self, scope: set[str]) -> Expr:
        term = self.term(scope)
        kind, value = self.peek()
        if kind == "op" and value in ("+", "-", "*", "/", "%", "&", "="):
            raise _NotInSubset(f"operator {value}")
        return term

    def term(self, scope: set[str]) -> Expr:
        kind, value = self.peek()
        if kind in ("string", "number"):
            self.at += 1
            return _constant(value)
        if kind == "op" and value == "-" and self.tokens[self.at + 1][0] == "number":
            self.at += 2
            number = self.tokens[self.at - 1][1]
            return _constant(_Literal(-number) if isinstance(number, float) else -number)
        if kind == "kw" and value in ("true", "false", "null"):
            self.at += 1
            return _constant({"true": True, "false": False, "null": None}[value])
        if kind == "op" and value == "[":
            return self.array(scope)
        if kind == "op" and value == "{":
            return self.object(scope)
        if kind == "op" and value == "(":
            self.at += 1
            self.depth += 1
            inner = self.comparison(scope)
            self.take("op", ")")
            self.depth -= 1
            return self.refs(inner, scope)
        if kind == "name":
            self.at += 1
            if self.tokens[self.at] == ("op", "("):
                return self.call(value, scope)
            if value == "input":
                return self.refs(_input, scope)
            if value not in scope:
                raise _NotInSubset(f"name {value}")
            return self.refs(_variable(value), scope)
        raise _NotInSubset(f"term {value!r}")

    def refs(self, base: Expr, scope: set[str]) -> Expr:
        """``base`` followed by its ``.name`` and ``[E]`` refs."""
        while True:
            token = self.tokens[self.at]  # no line end between a term and its ref
            if token == ("op", "."):
                self.at += 1
                kind, name = self.tokens[self.at]
                if kind not in ("name", "kw"):
                    raise _NotInSubset("ref")
                self.at += 1
                base = _dot(base, name)
            elif token == ("op", "["):
                self.at += 1
                self.depth += 1
                key = self.expr(scope)
                self.take("op", "]")
                self.depth -= 1
                base = _index(base, key)
            else:
                return base

    def call(self, name: str, scope: set[str]) -> Expr:
        if name not in _BUILTINS:
            raise _NotInSubset(f"function {name}")
        self.take("op", "(")
        self.depth += 1
        args: list[Expr] = []
        if not self.accept("op", ")"):
            while True:
                args.append(self.comparison(scope))
                if self.accept("op", ")"):
                    break
                self.take("op", ",")
        self.depth -= 1
        function, arity = _BUILTINS[name]
        if len(args) != arity:
            raise _NotInSubset(f"{name} with {len(args)} arguments")
        return self.refs(_call(function, args), scope)

    def array(self, scope: set[str]) -> Expr:
        self.take("op", "[")
        self.depth += 1
        if self.accept("op", "]"):
            self.depth -= 1
            return _constant([])
        first_at = self.at
        inner_scope = set(scope)
        # A comprehension's head reads variables its body binds: find the '|' at this level first.
        if self._comprehension_bar():
            self.skip_to_bar()
            self.take("op", "|")
            body = self.body(inner_scope, "]")
            after = self.at
            self.at = first_at
            head = self.expr(inner_scope)
            self.take("op", "|")
            self.at = after
            self.depth -= 1
            return self.refs(_comprehension(head, body), scope)
        items = [self.comparison(scope)]
        while self.accept("op", ","):
            if self.peek() == ("op", "]"):
                break
            items.append(self.comparison(scope))
        self.take("op", "]")
        self.depth -= 1
        return self.refs(_array(items), scope)

    def _comprehension_bar(self) -> bool:
        depth = 0
        at = self.at
        while True:
            kind, value = self.tokens[at]
            if kind == "end":
                return False
            if kind == "op":
                if value in ("(", "[", "{"):
                    depth += 1
                elif value in (")", "]", "}"):
                    if depth == 0:
                        return False
                    depth -= 1
                elif value == "|" and depth == 0:
                    return True
                elif value == "," and depth == 0:
                    return False
            at += 1

    def skip_to_bar(self) -> None:
        depth = 0
        while True:
            kind, value = self.tokens[self.at]
            if kind == "op" and value in ("(", "[", "{"):
                depth += 1
            elif kind == "op" and value in (")", "]", "}"):
                depth -= 1
            elif (kind, value) == ("op", "|") and depth == 0:
                return
            self.at += 1

    def object(self, scope: set[str]) -> Expr:
        self.take("op", "{")
        self.depth += 1
        pairs: list[tuple[str, Expr]] = []
        while not self.accept("op", "}"):
            kind, key = self.peek()
            if kind != "string":
                raise _NotInSubset("object key that is not a string literal")
            self.at += 1
            self.take("op", ":")
            pairs.append((key, self.comparison(scope)))
            if not self.accept("op", ","):
                self.take("op", "}")
                break
        self.depth -= 1
        if len({key for key, _ in pairs}) != len(pairs):
            raise _NotInSubset("duplicate object key")
        return self.refs(_object(pairs), scope)


# ------------------------------------------------------------------------------------------ evaluation

def _input(env: dict) -> Any:
    return env["input"]


def _constant(value: Any) -> Expr:
    return lambda env: value


def _variable(name: str) -> Expr:
    return lambda env: env[name]


def _dot(base: Expr, name: str) -> Expr:
    def get(env: dict) -> Any:
        value = base(env)
        return value.get(name, UNDEF) if type(value) is dict else UNDEF
    return get


def _index(base: Expr, key: Expr) -> Expr:
    def get(env: dict) -> Any:
        value, index = base(env), key(env)
        if value is UNDEF or index is UNDEF:
            return UNDEF
        if type(value) is dict:
            if type(index) is not str:
                raise Declined("object indexed by a non-string")
            return value.get(index, UNDEF)
        if type(value) is list:
            if type(index) is not int:
                raise Declined("array indexed by a non-integer")
            return value[index] if 0 <= index < len(value) else UNDEF
        return UNDEF
    return get


def _array(items: list[Expr]) -> Expr:
    def make(env: dict) -> Any:
        values = [item(env) for item in items]
        return UNDEF if any(value is UNDEF for value in values) else values
    return make


def _object(pairs: list[tuple[str, Expr]]) -> Expr:
    def make(env: dict) -> Any:
        result = {}
        for key, value in pairs:
            result[key] = value(env)
            if result[key] is UNDEF:
                return UNDEF
        return result
    return make


def _comprehension(head: Expr, body: Stmt) -> Expr:
    def make(env: dict) -> Any:
        values: list[Any] = []

        def collect(inner: dict) -> None:
            value = head(inner)
            if value is not UNDEF:
                values.append(value)
        body(env, collect)
        return values
    return make


def _conjunction(statements: list[Stmt]) -> Stmt:
    def run(env: dict, then: Callable[[dict], None], at: int = 0) -> None:
        if at == len(statements):
            then(env)
        else:
            statements[at](env, lambda inner: run(inner, then, at + 1))
    return run


def _some(names: list[str], collection: Expr) -> Stmt:
    def run(env: dict, then: Callable[[dict], None]) -> None:
        values = collection(env)
        if type(values) is dict:
            raise Declined("an object iterated")  # the engine's order of keys is not reproduced
        if type(values) is not list:
            return  # a scalar or undefined: nothing to iterate (the engine's answer too)
        name = names[-1]
        key = names[0] if len(names) == 2 else None
        for index, value in enumerate(values):
            if key is not None:
                env[key] = index
            env[name] = value
            then(env)
        env.pop(name, None)
        if key is not None:
            env.pop(key, None)
    return run


def _assign(name: str, expression: Expr) -> Stmt:
    def run(env: dict, then: Callable[[dict], None]) -> None:
        value = expression(env)
        if value is not UNDEF:
            env[name] = value
            then(env)
            del env[name]
    return run


def _holds(expression: Expr) -> Stmt:
    def run(env: dict, then: Callable[[dict], None]) -> None:
        value = expression(env)
        if value is not UNDEF and value is not False:
            then(env)
    return run


def _not(expression: Expr) -> Stmt:
    def run(env: dict, then: Callable[[dict], None]) -> None:
        value = expression(env)
        if value is UNDEF or value is False:
            then(env)
    return run


def _kind(value: Any) -> str:
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind is int or kind is float or kind is _Literal:
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if kind is list:
        return "array"
    if kind is dict:
        return "object"
    raise Declined(f"a {kind.__name__} compared")


_EXACT = 2 ** 53  # beyond it an int and a float may compare otherwise in the engine (doubles)


def _equal(left: Any, right: Any) -> bool:
    """Rego's ``==``: values of one type and equal (numbers by value, 1 == 1.0), arrays and objects item by item."""
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "number":
        left, right = _numbers(left, right)
    elif kind == "array":
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right))
    if kind == "object":
        return left.keys() == right.keys() and all(_equal(value, right[key]) for key, value in left.items())
    return left == right


class _Literal(float):
    """A number written in a policy: the engine keeps it as written (an input's float it rounds)."""


def _number(value: int | float) -> int | float:
    """A number as the engine holds it: a float of the input through C's ``%f`` (six decimals)."""
    if type(value) is float:
        if not math.isfinite(value):
            raise Declined("a float that is not finite")
        return float("%f" % value)
    if type(value) is int and not -_INT64 <= value < _INT64:
        raise Declined("an integer beyond 64 bits")
    return float(value) if type(value) is _Literal else value


def _numbers(left: int | float, right: int | float) -> tuple[int | float, int | float]:
    a, b = _number(left), _number(right)
    if type(a) is not type(b) and max(abs(a), abs(b)) >= _EXACT:
        raise Declined("a large integer compared with a float")
    return a, b


_PLAIN_TYPES = (str, bool, type(None))  # compared by Python as by Rego when both sides have one of them


def _compare(op: str, left: Expr, right: Expr) -> Expr:
    def test(env: dict) -> Any:
        a, b = left(env), right(env)
        if a is UNDEF or b is UNDEF:
            return UNDEF
        if op == "==":
            return a == b if type(a) is type(b) and type(a) in _PLAIN_TYPES else _equal(a, b)
        if op == "!=":
            return a != b if type(a) is type(b) and type(a) in _PLAIN_TYPES else not _equal(a, b)
        if _kind(a) != "number" or _kind(b) != "number":
            raise Declined("an ordering of non-numbers")
        return _ORDER[op](*_numbers(a, b))
    return test


_ORDER = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
          ">=": lambda a, b: a >= b}
_COMPARE = {"==", "!=", *_ORDER}


def _call(function: Callable[..., Any], args: list[Expr]) -> Expr:
    def run(env: dict) -> Any:
        values = [arg(env) for arg in args]
        if any(value is UNDEF for value in values):
            return UNDEF
        return function(*values)
    return run


class _Joined(str):
    """A string ``concat`` made: the engine quotes some of them when ``sprintf`` formats them."""


def _count(value: Any) -> Any:
    if type(value) in (list, dict) or isinstance(value, str):
        return len(value)
    return UNDEF


def _concat(delimiter: Any, items: Any) -> Any:
    if not isinstance(delimiter, str) or type(items) is not list:
        raise Declined("concat of other than a string and an array")
    if not all(isinstance(item, str) for item in items):
        return UNDEF
    return _Joined(delimiter.join(items))


_VERB = re.compile(r"%(.)")


def _sprintf(template: Any, args: Any) -> Any:
    if not isinstance(template, str) or type(args) is not list or isinstance(template, _Joined):
        raise Declined("sprintf of other than a string and an array")
    pieces: list[str] = []
    position = 0
    remaining = iter(args)
    used = 0
    for match in _VERB.finditer(template):
        pieces.append(template[position:match.start()])
        position = match.end()
        verb = match[1]
        if verb == "%":
            pieces.append("%")
            continue
        if verb not in "svd":
            raise Declined(f"sprintf verb %{verb}")
        value = next(remaining, UNDEF)
        used += 1
        pieces.append(_format(verb, value))
    if "%" in template[position:] or used != len(args):
        raise Declined("sprintf's verbs and arguments do not pair")
    pieces.append(template[position:])
    return "".join(pieces)


def _format(verb: str, value: Any) -> str:
    kind = type(value)
    if isinstance(value, _Joined):
        raise Declined("sprintf of a string concat made")
    if kind is str:
        if verb == "d":
            raise Declined("%d of a string")
        return value
    if kind is int:
        return str(_number(value))
    if (kind is float or kind is _Literal) and verb == "v":
        return "%.16g" % _number(value)
    if kind is bool and verb == "v":
        return "true" if value else "false"
    if value is None and verb == "v":
        return "null"
    raise Declined(f"%{verb} of {kind.__name__}")


_BUILTINS: dict[str, tuple[Callable[..., Any], int]] = {
    "count": (_count, 1), "concat": (_concat, 2), "sprintf": (_sprintf, 2)}
_RESERVED = {"input", "data", "_", *_BUILTINS}


# ------------------------------------------------------------------------------------------ the answer

_INT64 = 2 ** 63


_PLAIN = re.compile(r'[\x00-\x1f"\\]')  # what the engine prints unescaped, breaking its JSON answer


def _answer_value(value: Any) -> None:
    """Decline an item the engine's answer would not carry as it is (see the module's docstring)."""
    kind = type(value)
    if kind is dict:
        for key, inner in value.items():
            _answer_value(key)
            _answer_value(inner)
    elif kind is list:
        for inner in value:
            _answer_value(inner)
    elif isinstance(value, str):
        if _PLAIN.search(value):
            raise Declined("a string the engine's answer does not escape")
    elif isinstance(value, float):
        raise Declined("a float in a finding")


# ------------------------------------------------------------------------------------------ the policies

class NativePolicies:
    """A compiled policy set: :meth:`tree` is the engine's answer for one input document."""

    def __init__(self, packages: list[tuple[list[str], list[tuple[str, Expr, Stmt]]]]) -> None:
        self.packages = packages

    def tree(self, document: dict[str, Any]) -> dict[str, Any]:
        """The deny and warn sets of every package under ``nthlayer.policies``, as the engine answers
        them (the entrypoint's tree, each set a list). Raises :class:`Declined`.

        The document is read as it is: a number is made the engine's where it is compared or
        formatted (:func:`_number`). The engine refuses a document with a string that is not UTF-8
        anywhere in it, which orjson (refusing it too) finds at C speed."""
        try:
            orjson.dumps(document)
        except TypeError:  # (or an integer beyond 64 bits, which the engine might take: it decides)
            raise Declined("a string that is not UTF-8") from None
        env = {"input": document}
        tree: dict[str, Any] = {}
        for package, rules in self.packages:
            node = tree
            for part in package[2:]:
                node = node.setdefault(part, {})
            for severity, head, body in rules:
                found = node.setdefault(severity, [])
                seen = {json.dumps(item, sort_keys=True) for item in found}

                def keep(inner: dict, head: Expr = head, found: list = found, seen: set = seen) -> None:
                    item = head(inner)
                    if item is UNDEF:
                        return
                    _answer_value(item)
                    key = json.dumps(item, sort_keys=True)
                    if key not in seen:
                        seen.add(key)
                        found.append(item)
                body(env, keep)
        return tree


def compile_policies(modules: Iterable[tuple[str, str]]) -> NativePolicies | None:
    """The modules (name, Rego text) as a :class:`NativePolicies`, or ``None`` when any is outside the
    subset (or this module is turned off)."""
    if not enabled():
        return None
    packages = []
    for _, text in modules:
        try:
            package, rules = _Parser(text).module()
        except (_NotInSubset, IndexError, RecursionError):
            return None
        if package[:2] != ["nthlayer", "policies"] or len(package) < 3:
            return None
        packages.append((package, rules))
    return NativePolicies(packages)


__all__ = ["Declined", "NativePolicies", "compile_policies", "enabled"]
