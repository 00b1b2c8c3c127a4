# tier1-pagerduty (deny): a tier-1 (critical) service pages someone on PagerDuty. Without PagerDuty
# settings its pages end at Alertmanager's nthlayer-unrouted receiver; with settings that name no
# escalation, setup-pagerduty cannot create its service and the routing key is never issued.
package nthlayer.policies.tier1_pagerduty

import rego.v1

deny contains finding if {
	input.tier == 1
	not input.pagerduty.routed
	finding := {
		"id": "tier1-pagerduty",
		"msg": sprintf("tier-1 service '%s' must route its pages to PagerDuty: list pagerduty.escalation_emails or schedule_ids, or reference pagerduty.escalation_policy_id or service_id", [input.service]),
		"pointer": input.pagerduty.pointer,
	}
}

deny contains finding if {
	input.tier == 1
	input.pagerduty.routed
	input.pagerduty.escalation == "missing"
	finding := {
		"id": "tier1-pagerduty",
		"msg": sprintf("tier-1 service '%s' is on PagerDuty but names nobody to escalate to: set pagerduty.escalation_policy_id or service_id, or list schedule_ids or escalation_emails", [input.service]),
		"pointer": input.pagerduty.pointer,
	}
}
