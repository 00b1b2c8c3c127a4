# tier1-runbook (warn): a tier-1 service's alerts link a runbook (runbook_url), so whoever is paged at
# night knows what to do. A warning, not a deny: a spec may name its runbooks per dependency only, and
# the smallest valid spec (service, tier, team) must still build; --strict (the pre-commit hook) makes it fail.
package nthlayer.policies.tier1_runbook

import rego.v1

warn contains finding if {
	input.tier == 1
	input.runbook_url == null
	finding := {
		"id": "tier1-runbook",
		"msg": sprintf("tier-1 service '%s' has no runbook_url: its pages would link no runbook", [input.service]),
		"pointer": "/tier",
	}
}
