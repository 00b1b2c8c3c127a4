"""Policy verdicts on validated specs, for ``nthlayer validate`` and ``nthlayer policy check``."""
from __future__ import annotations

from typing import Iterable

from generators.errors import SpecError, sort_key
from generators.policy import PolicySet
from generators.spec import LoadedSpec
from nthlayer.buildsys.policies import project_policies, verdicts


def policy_problems(specs: list[LoadedSpec], catalog_dir: str, policies: PolicySet | None = None,
                    errors: Iterable[SpecError] = ()) -> tuple[list[SpecError], list[SpecError]]:
    """The project's policies (nthlayer.toml ``[policy]``) evaluated on ``specs``: (denies, warnings), each a
    ``file:line:col: policy <id>: message`` line. A spec with one of ``errors`` (a cross-file problem such as
    an unknown technology) is not judged: it fails anyway. Raises ConfigError or PolicyError (one line per
    problem) when the configuration or a policy file cannot be used."""
    policies = policies or project_policies()
    failed = {error.path for error in errors}
    specs = [spec for spec in specs if spec.located.path not in failed]
    if not specs:
        policies.compile()  # a broken policy is an error even with nothing to check
        return [], []
    found = verdicts([(spec.located, spec.service) for spec in specs], policies, catalog_dir)
    lines = sorted((line for spec_lines in found.values() for line in spec_lines), key=sort_key)
    return [line for line in lines if not line.warning], [line for line in lines if line.warning]
