"""The command table: name → (module, one-line help). Modules are imported only when their command runs.

Each module under nthlayer.cli.commands defines ``configure(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "build every service's artifacts into out/ (runs doit; extra arguments go to doit)"),
    "validate": ("validate", "validate service specs (files or folders) and, with --output, generated OpenSLO"),
    "policy": ("policy", "evaluate the Rego policies on specs (policy check), or show what they see (policy input)"),
    "init": ("init", "write services/NAME.yaml from a template"),
    "list-templates": ("list_templates", "list the templates 'init' can use"),
    "generate-slo": ("generate_slo", "write a service's OpenSLO documents or Prometheus SLO rules"),
    "generate-alerts": ("generate_alerts", "write a service's technology alerts from the rules catalog"),
    "import": ("import_specs", "write service specs from Sloth specs or OpenSLO documents (lossy fields reported)"),
    "catalog": ("catalog", "browse, test and import the technology rules catalog"),
    "setup-prometheus": ("setup_prometheus", "write a prometheus.yml fragment for out/ and check it with promtool"),
    "plugins": ("plugins", "list the plugins a build loads: kind, plugin API version, file or package"),
    "setup-pagerduty": ("setup_pagerduty", "plan and apply a service's PagerDuty team, policy, service, integration"),
    "setup-datadog": ("setup_datadog", "plan and apply a service's Datadog service definition, SLOs and burn-rate monitors"),
    "discover": ("discover", "propose each spec's upstream services and technologies from what Prometheus sees"),
    "track-budget": ("track_budget", "report error budgets from Prometheus and record them in state/"),
    "record-deploy": ("record_deploy", "record a deploy of a service (called by CD)"),
    "check-deploy": ("check_deploy", "approve (0) or block (2) a deploy on its error budget; 3 = cannot decide"),
    "record-incident": ("record_incident", "record an incident of a service"),
    "import-events": ("import_events", "bulk-import deploys and incidents from JSON/CSV files or PagerDuty"),
    "correlate-deploy": ("correlate_deploy", "score how likely a deploy caused the incidents after it"),
    "cost": ("cost", "incident minutes, pages, budget minutes spent, money and NthLayer's series per service and team"),
    "report": ("report", "write the HTML reliability report (budget history, deploys, incidents, gate) to out/reports/"),
    "state": ("state", "back up or restore the state database (nthlayer state backup|restore DIR)"),
    "serve": ("serve", "serve the REST API (deploys, gate, budgets, services) over HTTP; docs/api.md"),
    "api-key": ("api_key", "create, list or revoke the API keys 'nthlayer serve' accepts"),
    "operator": ("operator", "keep each ServiceReliability's PrometheusRule and AlertmanagerConfig (Kubernetes; docs/kubernetes.md)"),
    "config": ("config", "set, get, list or unset credential references in nthlayer.toml (never secrets)"),
    "rollback": ("rollback", "roll a service's ArgoCD application back to its previous healthy revision"),
}
