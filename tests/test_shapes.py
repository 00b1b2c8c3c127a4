"""Shape templates (generators.shapes) write exactly the bytes direct generation writes."""
from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators import openslo, shapes, slo_rules, tech_alerts
from generators.catalog import load_technologies
from generators.model import Service, Technology
from generators.render import render_files
from generators.spec import load_spec
from nthlayer.buildsys.kinds import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = [(openslo.openslo_documents, openslo.READS), (slo_rules.slo_rule_documents, slo_rules.READS)]
ALERTS = "alerts"  # the technology alerts, through their own entry points (they need the catalog)
EXAMPLES = [load_spec(os.path.relpath(path, ROOT), open(path, "rb").read()).service
            for path in sorted(glob.glob(os.path.join(ROOT, "services", "*.yaml")))]


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    shapes._seen.clear()
    shapes._templates.clear()
    for key in shapes.stats:
        shapes.stats[key] = 0
    yield


CATALOG = os.path.join(ROOT, "rules_catalog")


def direct(documents: Any, service: Service) -> dict[str, bytes]:
    if documents == ALERTS:
        catalog = load_technologies(CATALOG, service.technology_types)
        return tech_alerts.service_alert_files(service, catalog, f"out/{service.name}/prometheus")
    return render_files(documents(service), service.source, f"out/{service.name}/x")


def shaped(documents: Any, reads: frozenset[str], service: Service) -> dict[str, bytes]:
    if documents == ALERTS:  # the build's own wiring: catalog context, the real service's checks, the veto
        return generate("alerts", service, "out", CATALOG)
    return shapes.shaped_files(documents.__name__, documents, reads, service, f"out/{service.name}/x")




def renamed(service: Service, name: str, team: str | None = None, source: str | None = None,
            instances: tuple[str, ...] | None = None) -> Service:
    """The same spec copied under another name: the default selector {job: name} and any mention of the
    name or team in free text follow; with ``instances``, its dependencies get those names and their
    selectors those values."""
    team = team or service.team
    if instances is not None:
        service = dataclasses.replace(service, technologies=tuple(
            Technology(tech.type, f"{instances[i % len(instances)]}-{i}",
                       tuple((label, op, instances[(i + j) % len(instances)]) for j, (label, op, _v)
                             in enumerate(tech.selector)), tech.runbook_url)
            for i, tech in enumerate(service.technologies)))

    def follow(text: str | None) -> str | None:
        return text and text.replace(service.name, name).replace(service.team, team)

    selector = tuple((label, op, name if value == service.name else value) for label, op, value in
                     service.sli.selector)
    return dataclasses.replace(service, name=name, team=team, source=source or f"services/{name}.yaml",
                               sli=dataclasses.replace(service.sli, selector=selector),
                               description=follow(service.description), runbook_url=follow(service.runbook_url))


@pytest.mark.parametrize("documents, reads", KINDS, ids=["openslo", "slo_rules"])
def test_every_example_is_templated_and_byte_identical(documents: Any, reads: frozenset[str]) -> None:
    for service in EXAMPLES:
        twins = [service, renamed(service, f"{service.name}-two"), renamed(service, f"x{service.name}", "other-team")]
        for twin in twins:
            assert shaped(documents, reads, twin) == direct(documents, twin), twin.name
    # Each example's shape was seen first directly, then both twins came from its template: the
    # declared READS cover every field the generator touches.
    assert shapes.stats == {"direct": len(EXAMPLES), "templated": 2 * len(EXAMPLES), "not_in_shape": 0}


# Names the schema allows that YAML reads as something else where they stand alone, and paths whose
# characters force quoting: the style check must send those services to direct generation.
awkward_names = st.one_of(
    st.sampled_from(["true", "false", "yes", "no", "on", "off", "y", "n", "null", "123", "0x1f", "1e3", "0",
                     "12-30", "2026-11-27", "0o17", "inf", "nan", "a", "nthlayerstandin"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True))
awkward_teams = st.one_of(st.sampled_from(["true", "null", "1", "a_b", "team"]),
                          st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])?", fullmatch=True))
sources = st.one_of(st.just(None), st.sampled_from(["services/it's.yaml", "services/a b.yaml", "sérvices/x.yaml",
                                                    "services/#x.yaml", "services/NTHLAYERSTANDIN.yaml"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, len(EXAMPLES) - 1), first=awkward_names, second=awkward_names, team=awkward_teams,
       source=sources, description=st.one_of(st.just(""), st.text(max_size=30)))
def test_any_name_team_or_path_is_byte_identical(index: int, first: str, second: str, team: str,
                                                  source: str | None, description: str) -> None:
    base = dataclasses.replace(EXAMPLES[index], description=description)
    for documents, reads in KINDS:
        for name in (first, second, first):
            service = renamed(base, name, team, source)
            assert shaped(documents, reads, service) == direct(documents, service), (name, team, source)


def test_free_text_naming_the_service_still_shares_a_shape() -> None:
    base = dataclasses.replace(EXAMPLES[0], runbook_url=f"https://runbooks.example.com/{EXAMPLES[0].name}")
    other = renamed(base, "billing-api")
    other = dataclasses.replace(other, runbook_url="https://runbooks.example.com/billing-api")
    documents, reads = slo_rules.slo_rule_documents, slo_rules.READS
    for service in (base, other):
        assert shaped(documents, reads, service) == direct(documents, service)
    assert shapes.stats["templated"] == 1


@pytest.mark.parametrize("documents, reads", KINDS, ids=["openslo", "slo_rules"])
def test_placeholder_text_in_a_field_kept_as_it_is_means_direct_generation(documents: Any, reads: frozenset[str]
                                                                          ) -> None:
    """A spec whose own text holds a placeholder, in a field the stand-in does not change (an SLO's
    description): substituting back would meet it, so the service is generated directly."""
    base = next(s for s in EXAMPLES if s.slos)
    odd = dataclasses.replace(base.slos[0], description=f"{shapes.NAME} and {shapes.TEAM} own this")
    service = dataclasses.replace(base, slos=(odd, *base.slos[1:]))
    for twin in (service, renamed(service, "twin-one"), renamed(service, "twin-two")):
        assert shaped(documents, reads, twin) == direct(documents, twin)
    assert shapes.stats["templated"] == 0


def test_a_field_read_but_not_declared_falls_back_to_direct_generation() -> None:
    def documents(service: Service) -> dict[str, tuple[Any, bool]]:
        docs = slo_rules.slo_rule_documents(service)
        docs["extra.yaml"] = ({"technologies": [t.type for t in service.technologies]}, False)
        return docs

    service = next(s for s in EXAMPLES if s.technologies)
    for twin in (service, renamed(service, "twin-one"), renamed(service, "twin-two")):
        assert shaped(documents, slo_rules.READS, twin) == direct(documents, twin)
    assert shapes.stats["templated"] == 0 and shapes.stats["not_in_shape"] == 1


def test_a_placeholder_changed_by_the_generator_falls_back_to_direct_generation() -> None:
    def documents(service: Service) -> dict[str, tuple[Any, bool]]:
        docs = openslo.openslo_documents(service)
        docs["extra.yaml"] = ({"object": f"{service.name.upper().lower()}-x"}, False)  # read, then changed
        return docs

    service = EXAMPLES[0]
    for twin in (service, renamed(service, "twin-one"), renamed(service, "twin-two")):
        assert shaped(documents, openslo.READS, twin) == direct(documents, twin)
    assert shapes.stats["templated"] == 0


def test_unused_fields_refuse_every_use() -> None:
    unused = shapes.UNUSED
    for use in (lambda: bool(unused), lambda: list(unused), lambda: unused.type, lambda: unused == "api",
                lambda: f"{unused}", lambda: len(unused), lambda: "x" in unused, lambda: unused[0]):
        with pytest.raises(shapes._NotInShape):
            use()


def test_shapes_differ_when_any_read_field_differs() -> None:
    documents, reads = slo_rules.slo_rule_documents, slo_rules.READS
    base = EXAMPLES[0]
    slo = dataclasses.replace(base.slos[0], objective=Decimal("0.9"))
    variants = [base, renamed(base, "v-1"), dataclasses.replace(renamed(base, "v-2"), slos=(slo, *base.slos[1:])),
                # The low-traffic guard is the SLOs' own (observability.min_request_rate is their default).
                dataclasses.replace(renamed(base, "v-3"), slos=tuple(dataclasses.replace(s, guard=Decimal("7"))
                                                                     for s in base.slos)),
                dataclasses.replace(renamed(base, "v-4"), labels=(("env", "prod"),))]
    for service in variants:
        assert shaped(documents, reads, service) == direct(documents, service)
    assert shapes.stats["templated"] == 1


def test_equal_numbers_written_differently_are_different_shapes() -> None:
    documents, reads = slo_rules.slo_rule_documents, slo_rules.READS
    base = EXAMPLES[0]
    latency = base.slo("latency")
    assert latency.threshold_ms is not None
    wider = dataclasses.replace(latency, threshold_ms=Decimal(f"{latency.threshold_ms}.0"))
    variants = [base, renamed(base, "w-1"), dataclasses.replace(renamed(base, "w-2"), slos=(base.slos[0], wider)),
                dataclasses.replace(renamed(base, "w-3"), slos=tuple(dataclasses.replace(s, guard=Decimal("0.050"))
                                                                     for s in base.slos))]
    for service in variants:
        assert shaped(documents, reads, service) == direct(documents, service)
    assert shapes.stats["templated"] == 1


KIND_SPECS = sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "slo-kinds", "*", "spec.yaml")))


@pytest.mark.parametrize("path", KIND_SPECS, ids=lambda p: p.split(os.sep)[-2])
def test_every_slo_kind_is_templated_byte_identical(path: str) -> None:
    """A `slos:` block is part of the shape: twins of a spec share a template, and its bytes are theirs."""
    service = load_spec(os.path.relpath(path, ROOT), open(path, "rb").read()).service
    twins = [service, renamed(service, f"{service.name}-two"), renamed(service, f"x{service.name}", "other-team")]
    for documents, reads in KINDS:
        for twin in twins:
            assert shaped(documents, reads, twin) == direct(documents, twin)
    assert shapes.stats["not_in_shape"] == 0
    assert shapes.stats["templated"] == 2 * len(KINDS)


def test_technology_alerts_are_templated_per_shape_and_byte_identical() -> None:
    reads = tech_alerts.READS
    templatable = 0
    for service in EXAMPLES:
        equality_only = all(op in ("=", "!=") for tech in service.technologies for _l, op, _v in tech.selector)
        twins = [service, renamed(service, f"{service.name}-two", instances=("alpha", "beta")),
                 renamed(service, f"x{service.name}", "other-team", instances=("gamma",))]
        for twin in twins:
            assert shaped(ALERTS, reads, twin) == direct(ALERTS, twin), twin.name
        templatable += equality_only
    # Dependency names and selector values are placeholders too: twins share their original's template,
    # except where a selector uses a regex (its text goes through the PromQL parser).
    assert shapes.stats["templated"] == 2 * templatable and templatable >= len(EXAMPLES) - 2


def test_a_selector_meeting_a_rules_own_matcher_is_generated_directly() -> None:
    # apache's graceful-stop rule already selects state="graceful_stop": scoping with an identical matcher
    # does not repeat it, which a placeholder value could not show.
    apache = Technology("apache", "web", (("state", "=", "graceful_stop"),), None)
    base = dataclasses.replace(EXAMPLES[1], technologies=(apache,))
    for service in (base, renamed(base, "twin-a"), renamed(base, "twin-b")):
        assert shaped(ALERTS, tech_alerts.READS, service) == direct(ALERTS, service)
    assert shapes.stats["templated"] == 0


awkward_values = st.one_of(st.sampled_from(["true", "null", "123", "0x1f", "a b", "it's", 'say "hi"', "back\\slash",
                                            "x:y", "#tag", "- a", "NTHLAYERSTANDINVAL0X0X", "é", "a" * 80]),
                           st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, len(EXAMPLES) - 1), name=awkward_names, team=awkward_teams,
       values=st.lists(awkward_values, min_size=1, max_size=3))
def test_any_dependency_names_and_selector_values_are_byte_identical(index: int, name: str, team: str,
                                                                      values: list[str]) -> None:
    base = EXAMPLES[index]
    if not base.technologies:
        base = dataclasses.replace(base, technologies=(Technology("redis", "cache", (("cluster", "=", "c1"),), None),))
    for service in (base, renamed(base, name, team, instances=tuple(values)), renamed(base, name + "x", team)):
        assert shaped(ALERTS, tech_alerts.READS, service) == direct(ALERTS, service), (name, team, values)


def _fresh_generate(kind: str, service: Service) -> dict[str, bytes]:
    """``kind``'s files for ``service`` made directly (no template seen in this process yet)."""
    shapes._seen.clear()
    shapes._templates.clear()
    return generate(kind, service, "out", CATALOG)


@pytest.mark.parametrize("kind", ["openslo", "slo_rules", "alerts", "grafana", "kubernetes"])
def test_every_kind_of_the_build_is_byte_identical_from_a_template(kind: str) -> None:
    """Each kind's second service of a shape, made from the first one's template, as made directly. (The
    Kubernetes objects' names are cleaned from the service name: the stand-in's uppercase placeholder came
    out lowercased and hashed, a text no substitution puts back, and the template wrote it into every
    further service's PrometheusRule and AlertmanagerConfig.)"""
    for service in EXAMPLES:
        twin = renamed(service, f"{service.name}-two")
        expected = _fresh_generate(kind, twin)
        shapes._seen.clear()
        shapes._templates.clear()
        generate(kind, service, "out", CATALOG)
        generate(kind, service, "out", CATALOG)  # seen twice: its shape's template is made
        assert generate(kind, twin, "out", CATALOG) == expected, (kind, service.name)


def test_preparing_makes_no_file_and_leaves_templates_the_build_uses() -> None:
    """Inside shapes.preparing (a first build's parent, nthlayer.buildsys.kinds.prepare_shapes) a shaped
    kind makes no file: the shape is counted and its template made when due, and the next service of that
    shape outside is made from the template, byte for byte as directly."""
    from nthlayer.buildsys.kinds import SERVICE_KINDS, prepare_shapes

    shaped = [kind.name for kind in SERVICE_KINDS if kind.shaped]
    assert set(shaped) == {"openslo", "slo_rules", "alerts", "grafana", "kubernetes"}
    service = next(s for s in EXAMPLES if s.technologies)
    twin = renamed(service, f"{service.name}-two")
    expected = {kind: _fresh_generate(kind, twin) for kind in shaped}
    shapes._seen.clear()
    shapes._templates.clear()
    with shapes.preparing():
        assert all(generate(kind, service, "out", CATALOG) == {} for kind in shaped)
    assert shapes.templates_made() == 1  # the JSON dashboards at first sight; the YAML kinds at the second
    assert prepare_shapes(service, CATALOG) == len(shaped) - 1
    assert prepare_shapes(service, CATALOG) == 0
    before = dict(shapes.stats)
    for kind in shaped:
        assert generate(kind, twin, "out", CATALOG) == expected[kind], kind
    assert shapes.stats["templated"] - before["templated"] == len(shaped)
    assert shapes.stats["direct"] == before["direct"]
