"""The Rego engine process: compile policy modules with regopy, evaluate many input documents, answer JSON.

Run as ``python -m generators.policy_engine``: a request on stdin, ``{"modules": [[name, text], …],
"entrypoint": "nthlayer/policies", "inputs": [document, …]}``; on stdout either ``{"results": [tree, …]}``
(one package tree per input, as the entrypoint evaluates) or ``{"error": "<regopy's error>"}``.

Why a process of its own: rego-cpp's shared library replaces C++ ``operator new``/``delete`` with its own
allocator (snmalloc). In a process that also loads google-re2 (nthlayer validates label regexes with it),
libstdc++ binds to one allocator and memory is freed by the other: the process aborts
(``munmap_chunk(): invalid pointer``) or, worse, corrupts its heap. This module imports nothing but the
standard library and regopy, so the two never meet. It is also what keeps regopy's import (30-60 ms)
out of every build that evaluates nothing.
"""
from __future__ import annotations

import json
import sys
from typing import Any


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    """Compile ``request["modules"]`` once and evaluate the entrypoint for each input document."""
    from regopy import Input, Interpreter, LogLevel, RegoError

    rego = Interpreter()
    rego.log_level = LogLevel.NONE  # rego-cpp would otherwise print its errors on stdout
    try:
        for name, text in request["modules"]:
            rego.add_module(name, text)
        bundle = rego.build(None, [request["entrypoint"]])
    except RegoError as exc:
        return {"error": str(exc)}
    if not bundle.ok():
        return {"error": "the policies do not compile"}
    results: list[Any] = []
    for document in request["inputs"]:
        rego.set_input(Input(document))  # 3x faster than set_input_term(json.dumps(document))
        try:
            output = rego.query_bundle_entrypoint(bundle, request["entrypoint"])
        except ValueError as exc:  # regopy parses rego-cpp's answer as JSON; a malformed answer is a bug there
            return {"error": f"evaluation failed for input {document.get('path')!r}: the engine's answer is "
                             f"not JSON ({exc})", "runtime": True}
        if not output.ok():
            return {"error": f"evaluation failed for input {document.get('path')!r}: {output}", "runtime": True}
        results.append(output.results[0].expressions[0] if output.results and output.results[0].expressions
                       else {})
    return {"results": results}


def main() -> int:
    try:
        request = json.load(sys.stdin)
    except ValueError as exc:
        json.dump({"error": f"bad request: {exc}"}, sys.stdout)
        return 2
    try:
        answer = evaluate(request)
    except ImportError as exc:
        answer = {"error": f"the Rego engine is not installed ({exc}): pip install regopy", "runtime": True}
    json.dump(answer, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
