"""Rego policies over validated specs: load, compile and evaluate them in-process (regopy, rego-cpp).

The contract a policy file meets (docs/policies.md):

- one Rego module whose package is ``nthlayer.policies.<name>``;
- rules ``deny`` and/or ``warn``: sets of findings ``{"id": ..., "msg": ..., "pointer": ...}`` — a stable
  id, a message, and the JSON pointer into the spec of the field the finding is about (optional: the
  whole file). A ``deny`` fails validation and that service's build; a ``warn`` prints a warning
  (an error under ``--strict``);
- ``input`` is :func:`generators.policy_input.policy_input` of one spec.

The default policies ship in ``generators/policies/``, one file per policy id (``<id>.rego``), so that a
project disables one by its id. Evaluation is pure: the same files and the same spec give the same
findings. The Rego engine (regopy) runs in a process of its own (:mod:`generators.policy_engine` says
why), started only when something is evaluated: a build whose specs and policies are all unchanged never
starts it.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from generators.errors import SpecError, UserError, clip, excerpt
from generators.yamlload import Located

PACKAGE_PREFIX = "nthlayer.policies"
DEFAULT_POLICY_DIR = Path(__file__).resolve().parent / "policies"
SEVERITIES = ("deny", "warn")
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)[ \t]*(?:#.*)?$", re.MULTILINE)
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# What a verdict depends on besides the policy files and the input document's data: this evaluator, the
# code that builds the input document, and the Rego engine.
_CODE = ("policy.py", "policy_engine.py", "policy_native.py", "policy_input.py", "model.py", "tiers.py", "paging.py")


class PolicyError(UserError):
    """Policies that cannot be used (a syntax error, a wrong package, a malformed finding): the message
    is one or more ``file:line:col: message`` lines."""


class Finding(NamedTuple):
    """One ``deny`` or ``warn`` finding of one policy about one spec."""

    severity: str  # "deny" | "warn"
    id: str
    msg: str
    pointer: str
    source: str  # the policy file that made it

    def error(self, located: Located | None, path: str) -> SpecError:
        """The finding as an error line of ``path`` (``file:line:col: policy <id>: message``), at the line
        and column of the key ``pointer`` names (or the list item, or the nearest enclosing field)."""
        line, col = located.where(self.pointer, key=True) if located is not None else (1, 1)
        return SpecError(path, line, col, f"policy {self.id}", self.msg, self.severity == "warn")


@dataclass(frozen=True)
class PolicyFile:
    path: str  # as shown in messages
    text: str
    package: str
    default: bool

    @property
    def id(self) -> str:
        """A default policy's id: its file name without ``.rego``."""
        return Path(self.path).stem


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}:1:1: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise PolicyError(f"{path}:1:1: cannot read policy file: {exc.strerror}") from None


def _policy_file(path: str, default: bool) -> PolicyFile:
    text = _read(path)
    match = _PACKAGE.search(text)
    if match is None:
        raise PolicyError(f"{path}:1:1: no package line: a policy file starts with "
                          f"'package {PACKAGE_PREFIX}.<name>'")
    package = match[1]
    if not package.startswith(PACKAGE_PREFIX + "."):
        line = text.count("\n", 0, match.start(1)) + 1
        raise PolicyError(f"{path}:{line}:1: package {package} is not under {PACKAGE_PREFIX}: nthlayer evaluates "
                          f"the deny and warn rules of packages {PACKAGE_PREFIX}.<name>")
    return PolicyFile(path, text, package, default)


def default_policy_ids() -> list[str]:
    """The ids of the shipped policies (their file names)."""
    return sorted(path.stem for path in DEFAULT_POLICY_DIR.glob("*.rego"))


def _expand(paths: Iterable[str]) -> list[str]:
    """Files as given; folders expanded to their ``*.rego`` files (not ``*_test.rego``), sorted."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, name) for name in os.listdir(path)
                            if name.endswith(".rego") and not name.endswith("_test.rego") and not name.startswith("."))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise PolicyError(f"{path}:1:1: no such policy file or folder")
    return files


def unknown_ids(disabled: Iterable[str]) -> list[tuple[int, str, str]]:
    """The entries of a ``disable`` list that name no shipped policy: (index, id, hint)."""
    known = default_policy_ids()
    problems = []
    for index, name in enumerate(disabled):
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "the default policies are " + ", ".join(known)
            problems.append((index, str(name), hint))
    return problems


@dataclass
class PolicySet:
    """The policies a project evaluates: the shipped ones less those disabled, plus its own files."""

    files: tuple[PolicyFile, ...]

    @classmethod
    def load(cls, extra: Iterable[str] = (), disabled: Iterable[str] = ()) -> "PolicySet":
        """The default policies except the ids in ``disabled``, and the ``.rego`` files (or folders of
        them) in ``extra``. Raises :class:`PolicyError` for a file that cannot be used."""
        off = set(disabled)
        defaults = [_policy_file(str(path), True) for path in sorted(DEFAULT_POLICY_DIR.glob("*.rego"))
                    if path.stem not in off]
        own = [_policy_file(path, False) for path in _expand(extra)]
        packages = {f.package: f.path for f in defaults}
        for policy in own:
            if policy.package in packages:
                raise PolicyError(f"{policy.path}:1:1: package {policy.package} is already the default policy "
                                  f"{packages[policy.package]}: name yours another way (or disable that one)")
        return cls(tuple(defaults + own))

    def digest(self) -> str:
        """What every verdict depends on: the policy files, the evaluator and input code, the engine."""
        sha = hashlib.sha256()
        here = Path(__file__).resolve().parent
        for name in _CODE:
            sha.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
        sha.update(f"regopy={_regopy_version()}\0".encode())
        for policy in self.files:
            sha.update(f"{policy.path}\0{policy.package}\0{policy.text}\0".encode())
        return sha.hexdigest()[:32]

    def _modules(self) -> list[list[str]]:
        return [[policy.path, policy.text] for policy in self.files]

    def _run(self, inputs: list[dict[str, Any]]) -> list[Any]:
        """The package trees of ``inputs``, from one engine process (:mod:`generators.policy_engine`)."""
        request = json.dumps({"modules": self._modules(), "entrypoint": _ENTRYPOINT, "inputs": inputs})
        return self._answer(_ask_all([request])[0])

    def _answer(self, raw: str) -> list[Any]:
        try:
            answer = json.loads(raw)
        except ValueError:
            raise PolicyError(f"{self._first()}:1:1: the Rego engine failed: {clip(raw.strip() or 'no answer', 200)}") from None
        if "error" in answer:
            if answer.get("runtime"):
                raise PolicyError(f"{self._first()}:1:1: {answer['error']}")
            raise PolicyError(_rego_errors(answer["error"], {p.path: p.text for p in self.files}, self._first()))
        return answer["results"]

    def _first(self) -> str:
        own = [p.path for p in self.files if not p.default]
        return own[0] if own else self.files[0].path

    def compile(self) -> None:
        """Compile the policies (raises :class:`PolicyError` for a broken file) without evaluating any spec."""
        if self.files:
            self._run([])

    def evaluate(self, document: dict[str, Any]) -> list[Finding]:
        """Every finding of every policy about one input document, sorted."""
        return self.evaluate_all([document])[0]

    def evaluate_all(self, documents: list[dict[str, Any] | str], jobs: int = 1) -> list[list[Finding]]:
        """The findings about each document (a dict, or its JSON text), in order.

        When every policy is of the common shape, :mod:`generators.policy_native` answers for each
        document it can (0.05 ms instead of the engine's 0.6 ms), and one engine process compiles the
        set meanwhile: its errors stay the ones users see. The documents it declines, or all of them,
        go to the engine: one process, or ``jobs`` of them side by side when there are many (a policy
        edit re-checks every spec of a large project). A build's validation hands over JSON text: 10,000
        documents held as dicts until the engine runs cost the build's parent a hundred megabytes more
        than their text."""
        if not self.files or not documents:
            return [[] for _ in documents]
        results: list[list[Finding] | None] = [None] * len(documents)
        rest = list(range(len(documents)))
        if self._native() is not None:
            start_engines(1)  # compiling the set, beside the native evaluation
            for index, document in enumerate(documents):
                try:
                    results[index] = self.native_findings(_loads(document) if isinstance(document, str) else document)
                except ValueError:  # orjson refuses NaN and integers beyond 64 bits: the engine decides
                    pass
            rest = [index for index, found in enumerate(results) if found is None]
        chunks = engine_count(len(rest), jobs)
        size = max(1, -(-len(rest) // chunks))
        parts = [rest[i:i + size] for i in range(0, len(rest), size)] or [[]]
        head = '{"modules": %s, "entrypoint": %s, "inputs": [' % (json.dumps(self._modules()), json.dumps(_ENTRYPOINT))
        requests = [head + ", ".join(document if isinstance(document, str) else json.dumps(document)
                                     for document in (documents[index] for index in part)) + "]}"
                    for part in parts]
        for part, raw in zip(parts, _ask_all(requests)):
            for index, tree in zip(part, self._answer(raw)):
                results[index] = self._findings(tree)
        return results  # type: ignore[return-value]

    def native_findings(self, document: dict[str, Any]) -> list[Finding] | None:
        """The findings about one document when :mod:`generators.policy_native` answers for it; None when
        the engine must (a policy outside its subset, a value it declines, a finding that breaks the
        contract: the engine's run reports that). Valid only once the engine compiled the set."""
        native = self._native()
        if native is None:
            return None
        from generators.policy_native import Declined

        try:
            return self._findings(native.tree(document))
        except (Declined, PolicyError):
            return None

    def native(self) -> bool:
        """Whether :meth:`native_findings` can answer (every policy of the set in the native subset)."""
        return self._native() is not None

    def _native(self) -> Any:
        """The set compiled by :mod:`generators.policy_native`, or None (a policy outside its subset)."""
        return _native_policies(tuple((policy.path, policy.text) for policy in self.files), _native_enabled())

    def _findings(self, tree: Any) -> list[Finding]:
        findings: set[Finding] = set()
        for policy in self.files:
            node: Any = tree
            for part in policy.package.split(".")[2:]:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if not isinstance(node, dict):
                continue
            for severity in SEVERITIES:
                for item in _as_list(node.get(severity, [])):
                    findings.add(_finding(policy, severity, item))
        return sorted(findings)


_ENTRYPOINT = PACKAGE_PREFIX.replace(".", "/")


@lru_cache(maxsize=4)
def _native_policies(modules: tuple[tuple[str, str], ...], enabled: bool) -> Any:
    from generators.policy_native import compile_policies

    return compile_policies(modules) if enabled else None


def _native_enabled() -> bool:
    from generators.policy_native import enabled

    return enabled()


def _loads(text: str) -> Any:
    import orjson

    return orjson.loads(text)


def engine_count(documents: int, jobs: int) -> int:
    """How many engine processes judge ``documents`` documents with ``jobs`` cores: one per hundred, at most
    one per core."""
    return max(1, min(jobs, documents // 100))


def _engine() -> Any:
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "generators.policy_engine"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parent.parent), env=_engine_env())


_STARTED: list[Any] = []  # engine processes started ahead (start_engines), each waiting for its request


def start_engines(count: int) -> None:
    """Start ``count`` engine processes now for the evaluation to come: an engine takes 0.1-0.15 s to start
    (Python, regopy), which the caller spends meanwhile on the rest of its specs (a one-spec edit's build).
    The next evaluation takes them; :func:`stop_engines` ends those it did not. A process forked while they
    wait must close its copy of their input's write end (nthlayer.buildsys.settled.stamps_ahead's child
    does), or they never see the input end."""
    while len(_STARTED) < count:
        _STARTED.append(_engine())


def stop_engines() -> None:
    """End the engines :func:`start_engines` started that no evaluation took."""
    while _STARTED:
        process = _STARTED.pop()
        process.kill()
        process.communicate()


def _ask_all(requests: list[str]) -> list[str]:
    """Each request answered by an engine process of its own (started ahead, or now), all running at once."""
    processes = [_STARTED.pop(0) if _STARTED else _engine() for _ in requests]
    if len(processes) == 1:
        outputs = [processes[0].communicate(requests[0])]
    else:  # each fed and read by a thread of its own: one after the other, the second engine waited for its input
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(processes)) as threads:
            outputs = list(threads.map(lambda pair: pair[0].communicate(pair[1]), zip(processes, requests)))
    answers = []
    for process, (out, err) in zip(processes, outputs):
        if process.returncode != 0 and not out:
            last = (err.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
            out = f"exit status {process.returncode}: {last}"
        answers.append(out)
    return answers


def _engine_env() -> dict[str, str]:
    """The engine's environment: this one, with this package importable whatever the working folder."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _finding(policy: PolicyFile, severity: str, item: Any) -> Finding:
    """One element of a deny/warn set, checked against the contract."""
    def broken(reason: str) -> PolicyError:
        match = re.search(rf"^[ \t]*{severity}\b", policy.text, re.MULTILINE)
        line = policy.text.count("\n", 0, match.start()) + 1 if match else 1
        return PolicyError(f"{policy.path}:{line}:1: {severity} yields {clip(json.dumps(item), 120)}: {reason}")

    if not isinstance(item, dict):
        raise broken('each finding must be an object {"id": ..., "msg": ..., "pointer": ...}')
    ident, message, pointer = item.get("id"), item.get("msg"), item.get("pointer", "")
    if not isinstance(ident, str) or not _ID.match(ident):
        raise broken("its id must be a string of lowercase letters, digits, '-' and '.'")
    if policy.default and ident != policy.id:
        raise broken(f"a default policy's findings carry its file's id '{policy.id}'")
    if not isinstance(message, str) or not message:
        raise broken("its msg must be a non-empty string")
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise broken("its pointer must be a JSON pointer into the spec ('/tier', '/pagerduty/urgency'), or ''")
    return Finding(severity, ident, message, pointer, policy.path)


_ERROR = re.compile(r"\(error (\d+):")
_MESSAGE = re.compile(r"\(errormsg (\d+):")


def _rego_errors(text: str, sources: dict[str, str], fallback: str) -> str:
    """regopy's error (rego-cpp's error AST: ``(error N:file|offset|length (errormsg N:message) …)``) as
    ``file:line:col: message`` lines."""
    lines: list[str] = []
    position = 0
    while True:
        match = _ERROR.search(text, position)
        if match is None:
            break
        start = match.end()
        name = text[start:start + int(match[1])]
        where = re.match(r"\|(\d+)\|(\d+)", text[start + int(match[1]):])
        found = _MESSAGE.search(text, start)
        if found is None:
            break
        message = text[found.end():found.end() + int(found[1])]
        position = found.end() + int(found[1])
        if name not in sources:
            name = fallback
        line, col = _line_col(sources.get(name, ""), int(where[1])) if where else (1, 1)
        lines.append(f"{name}:{line}:{col}: {message}")
    if not lines:
        lines.append(f"{fallback}:1:1: {clip(text.strip().splitlines()[0] if text.strip() else 'invalid policy')}")
    return "\n".join(dict.fromkeys(lines))


def _line_col(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset into ``source``."""
    raw = source.encode("utf-8")[:offset]
    line = raw.count(b"\n") + 1
    col = len(raw[raw.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
    return line, col


def _regopy_version() -> str:
    import importlib.metadata  # (20 ms to import: only a digest needs it)

    try:
        return importlib.metadata.version("regopy")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return "missing"


def spec_findings(policies: PolicySet, document: dict[str, Any], located: Located | None,
                  path: str) -> list[SpecError]:
    """The findings about one spec as error lines (``warning`` set for ``warn``)."""
    return [finding.error(located, path) for finding in policies.evaluate(document)]


__all__ = ["PolicySet", "PolicyFile", "PolicyError", "Finding", "default_policy_ids", "unknown_ids",
           "spec_findings", "PACKAGE_PREFIX", "DEFAULT_POLICY_DIR"]
