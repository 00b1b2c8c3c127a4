# tier3-no-page (deny): no service pages on a tier-3 SLO. Tier 3 is best effort: the tier table gives
# its fast-burn alerts the page route, which PagerDuty turns into low-urgency incidents (the tier's
# urgency 'low': nobody is woken). A pagerduty.urgency of 'high' or 'severity_based' on a tier-3 service
# makes those pages high-urgency: raise the tier instead, or drop the override.
package nthlayer.policies.tier3_no_page

import rego.v1

deny contains finding if {
	input.tier == 3
	input.pagerduty.routed
	input.pagerduty.urgency != "low"
	paging := [slo.name | some slo in input.slos; slo.pages]
	count(paging) > 0
	finding := {
		"id": "tier3-no-page",
		# concat, not sprintf's %s: rego-cpp 1.5 quotes a string made by concat when sprintf formats it.
		"msg": concat("", [
			sprintf("tier-3 service '%s' would page on its SLOs (", [input.service]),
			concat(", ", paging),
			sprintf("): PagerDuty urgency '%s' makes their pages high-urgency incidents; tier-3 SLOs are best effort (remove pagerduty.urgency, or raise the tier)", [input.pagerduty.urgency]),
		]),
		"pointer": input.pagerduty.urgency_pointer,
	}
}
