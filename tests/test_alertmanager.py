"""generators.alertmanager: golden output, amtool's verdict, and no routing key ever inlined."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, UPDATE_GOLDEN, requires_amtool
from generators.alertmanager import alertmanager_config, alertmanager_files, routing_timing, service_route
from generators.spec import validate_specs
from generators.tiers import TIERS

GOLDEN = ROOT / "tests" / "golden" / "alertmanager"


def _services(folder: Path) -> list:
    result = validate_specs([str(folder)], None)
    assert result.errors == []
    return [spec.service for spec in result.specs]


def _relative_services(case: Path) -> list:
    cwd = os.getcwd()
    os.chdir(case)
    try:
        return _services(Path("services"))
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_golden(case: str) -> None:
    services = _relative_services(GOLDEN / case)
    files = alertmanager_files(services, "alertmanager")
    assert list(files) == ["alertmanager/alertmanager.yml"]
    expected = GOLDEN / case / "expected" / "alertmanager.yml"
    if UPDATE_GOLDEN:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(files["alertmanager/alertmanager.yml"])
    assert files["alertmanager/alertmanager.yml"].decode() == expected.read_text(encoding="utf-8")


def test_routes_match_service_and_split_by_severity() -> None:
    services = {s.name: s for s in _services(GOLDEN / "basic" / "services")}
    route = service_route(services["checkout"])
    assert route["matchers"] == ['service="checkout"']
    assert route["group_by"] == ["alertname", "service", "slo", "dependency"]
    assert [(r["receiver"], r["matchers"]) for r in route["routes"]] == [
        ("checkout-pagerduty", ['severity=~"page|critical"']),
        ("checkout-pagerduty-low", ['severity=~"ticket|warning"']),
        ("nthlayer-info", ['severity=~"info"']),
    ]
    page, ticket = route["routes"][0], route["routes"][1]
    assert (page["group_wait"], page["repeat_interval"]) == ("30s", "1h")
    assert (ticket["group_wait"], ticket["repeat_interval"]) == ("5m", "12h")


def test_timings_slow_down_with_tier() -> None:
    from generators.slo_maths import duration_seconds

    for route in ("page", "ticket"):
        repeats = [duration_seconds(routing_timing(TIERS[n], route).repeat_interval) for n in (1, 2, 3)]
        assert repeats == sorted(repeats) and len(set(repeats)) == 3
    for n in TIERS:  # a ticket never nags more often than a page
        assert duration_seconds(routing_timing(TIERS[n], "ticket").repeat_interval) > \
            duration_seconds(routing_timing(TIERS[n], "page").repeat_interval)


def test_receivers_read_key_from_file_never_inline() -> None:
    config = alertmanager_config(_services(GOLDEN / "basic" / "services"), "/etc/alertmanager/secrets")
    configs = [c for r in config["receivers"] for c in r.get("pagerduty_configs", [])]
    assert len(configs) == 6
    assert all("routing_key" not in c and "service_key" not in c for c in configs)
    assert sorted({c["routing_key_file"] for c in configs}) == [
        "/etc/alertmanager/secrets/checkout.key", "/etc/alertmanager/secrets/ledger.key",
        "/etc/alertmanager/secrets/nightly-reports.key"]
    assert sorted({c["severity"] for c in configs}) == ["critical", "warning"]


def test_no_services_still_valid_document() -> None:
    config = alertmanager_config([])
    assert config["route"]["routes"] == []
    assert [r["name"] for r in config["receivers"]] == ["nthlayer-unrouted", "nthlayer-info"]


@requires_amtool
def test_amtool_accepts_generated_config(tmp_path: Path) -> None:
    from nthlayer.integrations.promtool import amtool_check_config

    files = alertmanager_files(_services(GOLDEN / "basic" / "services"), str(tmp_path / "alertmanager"),
                               secrets_dir=str(tmp_path / "secrets"))
    [(path, data)] = files.items()
    Path(path).parent.mkdir(parents=True)
    Path(path).write_bytes(data)
    verdict = amtool_check_config(path)
    assert verdict.ok, verdict.output
    assert "SUCCESS" in verdict.output
    loaded = yaml.safe_load(data)
    assert len(loaded["route"]["routes"]) == 3


@requires_amtool
def test_amtool_rejects_what_we_must_not_write(tmp_path: Path) -> None:
    """Proves the check above can fail: a receiver naming both key forms is refused."""
    from nthlayer.integrations.promtool import amtool_check_config

    config = alertmanager_config(_services(GOLDEN / "basic" / "services"))
    config["receivers"][2]["pagerduty_configs"][0]["routing_key"] = "inline"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert not amtool_check_config(str(path)).ok


def test_service_without_pagerduty_routes_to_nobody(tmp_path: Path) -> None:
    (tmp_path / "quiet.yaml").write_text("service: quiet\ntier: 2\nteam: ops\n", encoding="utf-8")
    [service] = _services(tmp_path)
    config = alertmanager_config([service])
    assert [r["receiver"] for r in config["route"]["routes"][0]["routes"]] == [
        "nthlayer-unrouted", "nthlayer-unrouted", "nthlayer-info"]
    assert [r["name"] for r in config["receivers"]] == ["nthlayer-unrouted", "nthlayer-info"]


# --- alertmanager.yml a service at a time (generators/alertmanager.py _config_text) -------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from generators.alertmanager import Routing, _config_text  # noqa: E402
from generators.render import to_yaml  # noqa: E402

_AWKWARD = ["true", "yes", "no", "on", "off", "null", "y", "n", "123", "1e3", "0x1f", "-x", "a.b", "x:y", "a #b",
            "it's", 'say "hi"', "ünïcode", "NthlayerNameX", "NthlayerTeamX", "a" * 990, "~", "<<", "=", "a b", ""]
_TEXT = st.one_of(st.sampled_from(_AWKWARD), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_TEXT, _TEXT, st.integers(1, 3), st.booleans()), min_size=1, max_size=6, unique_by=lambda t: t[0]),
       st.sampled_from(["state/secrets", "/etc/alertmanager/secrets", "yes", "a b/c", "-"]))
def test_alertmanager_yml_a_service_at_a_time_is_the_whole_document(services: list, secrets: str) -> None:
    ordered = sorted((Routing(name, team, tier, paged, "services/x.yaml") for name, team, tier, paged in services),
                     key=lambda routing: routing.name)
    text = _config_text(ordered, secrets)
    if text is not None:  # None: the whole document is rendered instead
        assert text == to_yaml(alertmanager_config(ordered, secrets))


def test_alertmanager_yml_of_many_services_takes_the_stand_in_path() -> None:
    """The stand-in pieces are used for ordinary names (a broken guard would render each service directly:
    the same text, slower, so the equality above alone would not notice)."""
    import generators.alertmanager as module

    ordered = [Routing(f"svc-{index:03d}", f"team-{index % 7}", index % 3 + 1, index % 4 != 0, "s.yaml")
               for index in range(40)]
    direct = []
    original = module.service_route
    module.service_route = lambda service: (direct.append(service.name), original(service))[1]
    try:
        text = _config_text(ordered, "state/secrets")
    finally:
        module.service_route = original
    assert text == to_yaml(alertmanager_config(ordered, "state/secrets"))
    assert direct == [module._NAME] * len(direct) and 1 <= len(direct) <= 6  # one stand-in per (tier, paging)


# --- alertmanager.yml rewritten from its last version (generators/alertmanager.py Layout) ----------------

from generators.alertmanager import alertmanager_text  # noqa: E402

_SERVICE = st.tuples(_TEXT, _TEXT, st.integers(1, 3), st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_SERVICE, min_size=0, max_size=8, unique_by=lambda t: t[0]),
       st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["team", "tier", "paged", "remove", "rename"]), _TEXT),
                max_size=4),
       st.lists(_SERVICE, max_size=2))
def test_alertmanager_yml_from_its_last_version_is_the_whole_document(services: list, edits: list, added: list) -> None:
    def routings(items: list) -> list[Routing]:
        return [Routing(name, team, tier, paged, "services/x.yaml") for name, team, tier, paged in items]

    before = list(services)
    after = [list(item) for item in services]
    for index, change, text in edits:
        if index >= len(after) or after[index] is None:
            continue
        if change == "team":
            after[index][1] = text
        elif change == "tier":
            after[index][2] = after[index][2] % 3 + 1
        elif change == "paged":
            after[index][3] = not after[index][3]
        elif change == "remove":
            after[index] = None
        else:
            after[index][0] = text
    after = [item for item in after if item is not None] + [list(item) for item in added]
    after = list({item[0]: tuple(item) for item in after}.values())  # names stay unique
    if not after:
        return
    files, layout = alertmanager_text(routings(before), "am", "state/secrets") if before else ({}, None)
    previous = None if layout is None else (files["am/alertmanager.yml"], layout)
    whole, whole_layout = alertmanager_text(routings(after), "am", "state/secrets")
    again, again_layout = alertmanager_text(routings(after), "am", "state/secrets", previous)
    assert again == whole and again_layout == whole_layout


def test_alertmanager_yml_copies_the_unchanged_services_and_renders_the_edited_one() -> None:
    import generators.alertmanager as module

    services = [Routing(f"svc-{index:03d}", f"team-{index % 7}", index % 3 + 1, index % 4 != 0, "s/a.yaml")
                for index in range(50)]
    files, layout = alertmanager_text(services, "am")
    edited = [*services[:20], services[20]._replace(team="other"), *services[21:]]
    rendered = []
    original = module._service_text
    module._service_text = lambda service, *rest: (rendered.append(service.name), original(service, *rest))[1]
    try:
        again, _ = alertmanager_text(edited, "am", previous=(files["am/alertmanager.yml"], layout))
        # a layout that does not fit the bytes (another file's): every service is rendered, the same bytes
        rendered_before = len(rendered)
        tampered, _ = alertmanager_text(edited, "am", previous=(files["am/alertmanager.yml"] + b"#", layout))
    finally:
        module._service_text = original
    assert again == tampered == alertmanager_text(edited, "am")[0]
    assert rendered[:rendered_before] == ["svc-020"]
    assert len(rendered) - rendered_before == 50
