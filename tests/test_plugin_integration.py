"""Integration plugins: `nthlayer setup-pagerduty` runs them after its own work (against the fake PagerDuty)."""
from __future__ import annotations

from pathlib import Path

from tests.pagerduty_fake import FakePagerDuty
from tests.test_pagerduty import _setup, _spec, fake  # noqa: F401 - the fixture, used by name

ANNOUNCE = """\
from nthlayer.plugin import Integration


class Announce(Integration):
    name = "announce"

    def applies_to(self, service):
        return service.team == "payments"

    def run(self, context):
        for service in context.services:
            result = context.results[service.name]
            print(f"announce {context.command} {service.name}: service {result['ids'].get('service')}, "
                  f"dry run {context.dry_run}, {len(result['actions'])} steps")
"""

FAILING = """\
from nthlayer.plugin import Integration


class Notify(Integration):
    def run(self, context):
        raise ConnectionError("chat server refused the message for " + context.services[0].name)
"""


def test_an_integration_runs_after_the_apply_with_its_ids(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    _spec(tmp_path, "search", "  escalation_emails: [lead@example.com]\n")
    (tmp_path / "services" / "search.yaml").write_text(
        (tmp_path / "services" / "search.yaml").read_text().replace("team: payments", "team: discovery"))
    (tmp_path / "announce.py").write_text(ANNOUNCE)
    code, out, err = _setup(run_cli, fake, "--plugin", "announce.py")
    assert (code, err) == (0, "")
    service_id = fake.all("services")[0]["id"] if fake.all("services")[0]["name"] == "checkout" else \
        fake.all("services")[1]["id"]
    lines = out.splitlines()
    # After the command's own output, once, with the services it applies to (not search: team discovery).
    assert lines[-2:] == ["plugin announce (announce.py): 1 service",
                          f"announce setup-pagerduty checkout: service {service_id}, dry run False, 4 steps"]
    code, out, err = _setup(run_cli, fake, "--plugin", "announce.py", "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == f"announce setup-pagerduty checkout: service {service_id}, dry run True, 4 steps"


def test_a_failing_integration_fails_the_command_after_its_work(fake: FakePagerDuty, run_cli, tmp_path: Path) -> None:
    _spec(tmp_path)
    (tmp_path / "notify.py").write_text(FAILING)
    code, out, err = _setup(run_cli, fake, "--plugin", "notify.py")
    assert code == 1
    assert err == ("nthlayer setup-pagerduty: error: plugin notify.py:6: setup-pagerduty: run(): ConnectionError: "
                   "chat server refused the message for checkout\n")
    assert "Apply complete: 4 created" in out  # PagerDuty's objects were made before the hook ran
    assert len(fake.all("services")) == 1
