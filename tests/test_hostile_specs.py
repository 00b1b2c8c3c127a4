"""Hostile input that used to validate and then break a build or Prometheus (issue 14, items 7, 9, 10, 16)."""
from __future__ import annotations

from pathlib import Path

import pytest

from generators.spec import validate_specs

KNOWN = ["postgres", "redis", "kafka", "mysql"]

# Pages routed somewhere, so the no-routing warning (issue 14 item 1) stays out of these tests' output.
ROUTED = "pagerduty: {schedule_ids: [PABC123]}\n"


def _lines(paths: list[str]) -> list[str]:
    result = validate_specs(paths, KNOWN)
    return [e.format() for e in result.errors]


@pytest.mark.parametrize("argv", [("init", "evil\n", "--team", "t"), ("init", "good", "--team", "t\n")])
def test_init_refuses_names_with_a_trailing_newline(run_cli, tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, _out, err = run_cli(*argv, "--services-dir", str(tmp_path))
    assert code == 1
    assert "is not a valid" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _run_validate(run_cli, *args: str) -> tuple[int, str, str]:
    return run_cli("validate", "--catalog", "rules_catalog", *args)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with one valid spec, as the current directory."""
    from tests.conftest import ROOT

    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "ok.yaml").write_text("service: ok\ntier: 1\nteam: t\n" + ROUTED
                                                   + "runbook_url: https://runbooks.example.com/ok\n")
    (tmp_path / "rules_catalog").symlink_to(ROOT / "rules_catalog")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fifo_in_services_is_refused_not_waited_on(run_cli, project: Path) -> None:
    import os

    os.mkfifo(project / "services" / "pipe.yaml")
    code, _out, err = _run_validate(run_cli, "services")
    assert code == 1
    assert err.splitlines() == [
        "services/pipe.yaml:1:1: /: not a regular file (a named pipe); only regular files are read",
        "1 error in 1 file",
    ]


def test_symlink_leaving_the_project_is_refused_without_printing_its_target(run_cli, project: Path,
                                                                           tmp_path_factory: pytest.TempPathFactory
                                                                           ) -> None:
    secret = tmp_path_factory.mktemp("elsewhere") / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    (project / "services" / "evil.yaml").symlink_to(secret)
    code, _out, err = _run_validate(run_cli, "services")
    assert code == 1
    assert err.splitlines() == [
        f"services/evil.yaml:1:1: /: symbolic link to {secret}, outside the project {project}; refused "
        "(--allow-external-links, or NTHLAYER_ALLOW_EXTERNAL_LINKS=1 for a build, reads it)",
        "1 error in 1 file",
    ]
    code, _out, err = _run_validate(run_cli, "--allow-external-links", "services")
    assert code == 1 and "root:x:0:0:root:/root:/bin/bash" in err
    assert max(len(line) for line in err.splitlines()) < 400  # an excerpt, never the whole file


def test_symlink_inside_the_project_is_read(run_cli, project: Path) -> None:
    (project / "shared").mkdir()
    (project / "shared" / "real.yaml").write_text("service: linked\ntier: 2\nteam: t\n" + ROUTED)
    (project / "services" / "linked.yaml").symlink_to(project / "shared" / "real.yaml")
    code, out, err = _run_validate(run_cli, "services")
    assert (code, err) == (0, "")
    assert out.startswith("2 specs valid")


def test_dangling_and_looping_links_are_spec_errors(run_cli, project: Path) -> None:
    (project / "services" / "gone.yaml").symlink_to(project / "services" / "missing.yaml")
    (project / "services" / "loop.yaml").symlink_to(project / "services" / "loop.yaml")
    code, _out, err = _run_validate(run_cli, "services")
    assert code == 1
    assert err.splitlines() == [
        f"services/gone.yaml:1:1: /: symbolic link to {project}/services/missing.yaml, which does not exist",
        "services/loop.yaml:1:1: /: symbolic link that loops (it leads back to itself)",
        "2 errors in 2 files",
    ]


def test_long_values_are_quoted_as_excerpts(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("service: s\ntier: 1\nteam: t\ndescription: " + "x" * 5000 + "\n"
                                     "labels: {env: " + "y" * 5000 + "}\n")
    lines = _lines([str(tmp_path / "s.yaml")])
    assert len(lines) == 2 and all(len(line) < 400 for line in lines), lines
    assert "… (5000 characters)" in lines[0]


def test_build_reports_pipes_and_links_as_spec_errors_and_builds_the_rest(project: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    os.mkfifo(project / "services" / "pipe.yaml")
    (project / "services" / "passwd.yaml").symlink_to("/etc/passwd")
    (project / "services" / "gone.yaml").symlink_to("missing.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project)],
                            cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[:3] == [
        f"services/gone.yaml:1:1: /: symbolic link to {project}/services/missing.yaml, which does not exist",
        "services/passwd.yaml:1:1: /: symbolic link to /etc/passwd, outside the project "
        f"{os.path.realpath(project)}; refused (--allow-external-links, or NTHLAYER_ALLOW_EXTERNAL_LINKS=1 "
        "for a build, reads it)",
        "services/pipe.yaml:1:1: /: not a regular file (a named pipe); only regular files are read",
    ]
    assert "root:" not in result.stdout + result.stderr
    assert (project / "out" / "ok" / "prometheus" / "slo.rules.yaml").is_file()


def test_validate_of_one_file_reports_a_duplicate_in_its_folder_as_build_does(run_cli, project: Path) -> None:
    (project / "services" / "ok-copy.yaml").write_text("service: ok\ntier: 2\nteam: t\n" + ROUTED)
    code, _out, err = _run_validate(run_cli, "services/ok-copy.yaml")
    assert code == 1
    assert err.splitlines() == [
        "services/ok-copy.yaml:1:10: /service: duplicate service name 'ok' (also in services/ok.yaml)",
        "services/ok-copy.yaml:1:10: /service: warning: the file is named 'ok-copy' but defines service 'ok'; "
        "name it ok.yaml so the service is found by its name",
        "1 error in 1 file",
    ]


def test_build_reports_duplicates_as_validate_does_even_across_yaml_and_yml(run_cli, project: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    (project / "services" / "ok.yml").write_text("service: ok\ntier: 2\nteam: t\n" + ROUTED)
    _code, _out, validated = _run_validate(run_cli, "services")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project)],
                            cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert validated.splitlines()[:-1] == result.stderr.splitlines()[:-1] == [
        "services/ok.yaml:1:10: /service: duplicate service name 'ok' (also in services/ok.yml)",
        "services/ok.yml:1:10: /service: duplicate service name 'ok' (also in services/ok.yaml)",
    ]


def test_a_file_named_unlike_its_service_is_a_warning(run_cli, project: Path) -> None:
    (project / "services" / "payments.yaml").write_text("service: payment-api\ntier: 2\nteam: t\n" + ROUTED)
    code, out, err = _run_validate(run_cli, "services")
    assert code == 0
    assert err.splitlines() == [
        "services/payments.yaml:1:10: /service: warning: the file is named 'payments' but defines service "
        "'payment-api'; name it payment-api.yaml so the service is found by its name",
    ]
    assert out == "2 specs valid (2 services, 1 warning)\n"


def test_a_selector_that_cannot_be_scoped_blames_the_spec_not_the_catalog() -> None:
    """Validation refuses such selectors; a model built around it still gets a spec error, no traceback."""
    from generators.catalog import load_technologies
    from generators.errors import SpecErrors
    from generators.model import build_service
    from generators.tech_alerts import service_alert_document
    from tests.conftest import ROOT

    service = build_service({"service": "s", "tier": 1, "team": "t", "dependencies": {"technologies": [
        {"type": "redis", "name": "cache", "selector": {"__name__": "x"}}]}}, "services/s.yaml")
    with pytest.raises(SpecErrors) as caught:
        service_alert_document(service, load_technologies(str(ROOT / "rules_catalog"), ["redis"]))
    [line] = caught.value.lines()
    assert line.startswith("services/s.yaml:1:1: /dependencies/technologies/0/selector: cannot add this selector "
                           "to redis rule ")


def test_sli_regex_python_reads_differently_gets_test_series_prometheus_matches(tmp_path: Path) -> None:
    """Test series are matched with RE2, as Prometheus matches: Python's re reads [[:digit:]] as a set of
    the characters '[:digt' (and rejects \\pN), so no failed-request series could be made."""
    from generators.slo_rules import slo_rule_files
    from generators.spec import load_spec
    from nthlayer.integrations.promtool import test_rules

    raw = ("service: s\ntier: 1\nteam: t\nobservability:\n  sli:\n"
           "    error_matchers: {code: '=~5[[:digit:]]{2}|\\pN{4}'}\n").encode()
    files = slo_rule_files(load_spec(str(tmp_path / "s.yaml"), raw).service, str(tmp_path))
    for path, data in files.items():
        Path(path).write_bytes(data)
    result = test_rules(sorted(p for p in files if p.endswith(".test.yaml")))
    assert result.ok, result.output


def test_allowing_external_links_takes_effect_on_the_next_build_and_revoking_it_too(
        project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """NTHLAYER_ALLOW_EXTERNAL_LINKS is part of what a spec's cached validation result depends on: a build
    that refused a link, then one with the setting, reads it; one without it again refuses it."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    outside = tmp_path_factory.mktemp("elsewhere") / "ext.yaml"
    outside.write_text("service: ext\ntier: 2\nteam: t\n" + ROUTED)
    (project / "services" / "ext.yaml").symlink_to(outside)
    base = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}

    def build(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project)],
                              cwd=project, env={**base, **extra}, capture_output=True, text=True, timeout=120)

    rules = project / "out" / "ext" / "prometheus" / "slo.rules.yaml"
    refused = "services/ext.yaml:1:1: /: symbolic link to "
    first = build()
    assert first.returncode != 0 and refused in first.stderr and not rules.exists()
    allowed = build(NTHLAYER_ALLOW_EXTERNAL_LINKS="1")
    assert allowed.returncode == 0, allowed.stderr
    assert refused not in allowed.stderr and rules.is_file()
    again = build()
    assert again.returncode != 0 and refused in again.stderr


HOSTILE_SLOS = """\
service: x
tier: 1
team: t
pagerduty: {escalation_emails: [a@b.c]}
slos:
  - name: avail
    availability:
      selector: {job: "=~(?!foo).*"}
  - name: lat
    latency:
      threshold: 0.5
      selector: {job: "=~foo(["}
  - name: ev
    description: "{{ $value }}"
    events:
      bad: 'errs_total{job=~"ab"}'
      total: 'reqs_total'
    alerting:
      labels: {route: "{{x}}"}
      annotations: {dash: "{{ query \\"up\\" }}"}
  - name: rq
    ratio_query: 'sum(rate(a_total{x=~"(?<n>a)"}[$window])) / sum(rate(b_total[$window]))'
"""


def test_build_refuses_hostile_slo_fields_with_spec_errors_not_a_traceback(run_cli, project: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    (project / "services" / "x.yaml").write_text(HOSTILE_SLOS)
    _code, _out, validated = _run_validate(run_cli, "services")
    not_re2 = ("is not a regular expression Prometheus accepts (Go's RE2 syntax, which has no lookaround, "
               "backreferences or possessive quantifiers)")
    template = ("Prometheus reads alert labels and annotations as templates, so this would break the rule file "
                "or run a query; remove it")
    expected = [
        f"services/x.yaml:8:23: /slos/0/availability/selector/job: '(?!foo).*' {not_re2}: invalid perl operator: (?!",
        f"services/x.yaml:12:23: /slos/1/latency/selector/job: 'foo([' {not_re2}: missing ]: [",
        f"services/x.yaml:14:18: /slos/2/description: '{{{{ $value }}}}' contains '{{{{' and '}}}}': {template}",
        f"services/x.yaml:19:23: /slos/2/alerting/labels/route: '{{{{x}}}}' contains '{{{{' and '}}}}': {template}",
        f"services/x.yaml:20:27: /slos/2/alerting/annotations/dash: '{{{{ query \"up\" }}}}' contains '{{{{' and "
        f"'}}}}': {template}",
        f"services/x.yaml:22:18: /slos/3/ratio_query: matcher x=~'(?<n>a)' {not_re2}: named groups are written "
        "(?P<name>...) in Go's regexp",
    ]
    assert validated.splitlines() == expected + ["6 errors in 1 file"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NTHLAYER_")}
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project)],
                            cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[:-1] == expected
    assert (project / "out" / "ok" / "prometheus" / "slo.rules.yaml").is_file()
    assert not (project / "out" / "x").exists()


@pytest.mark.parametrize("spec", [
    {"observability": {"sli": {"selector": {"job": "a\u2028b", "env": "c\u2029d\x85"}}}},
    {"slos": [{"name": "g", "threshold": {"query": 'max(up{job="a\u2028b"})', "op": "<", "value": 1}},
              {"name": "r", "ratio_query": 'sum(rate(e_total{job="\\\\\u2028{{"}[$window])) / sum(rate(t_total[$window]))'}]},
], ids=["sli-selector", "slo-queries"])
def test_unicode_line_separators_in_user_text_keep_rule_files_readable(tmp_path: Path, spec: dict) -> None:
    """U+2028, U+2029 and NEL are line breaks to PyYAML's literal blocks and not to Prometheus' YAML reader;
    the property test met them in a query: the rule file must read back as written, and promtool accept it."""
    import yaml

    from generators.spec import load_spec
    from nthlayer.buildsys.kinds import generate
    from nthlayer.integrations.promtool import check_rules
    from tests.conftest import ROOT

    raw = yaml.safe_dump({"service": "s", "tier": 1, "team": "t", **spec}, allow_unicode=True).encode("utf-8")
    files = generate("slo_rules", load_spec("services/s.yaml", raw).service, str(tmp_path), str(ROOT / "rules_catalog"))
    rules = sorted(path for path in files if path.endswith(".rules.yaml"))
    for path, data in files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    exprs = [rule["expr"] for path in rules for group in yaml.safe_load(files[path])["groups"] for rule in group["rules"]]
    assert any("\u2028" in expr for expr in exprs)
    result = check_rules(rules)
    assert result.ok, result.output
