# objective-below-tier (warn): a tier-2 or tier-3 service's success-ratio SLO is looser than its tier's
# availability default. (Tier 1 has the stricter tier1-objective.) Lower the tier rather than the bar.
package nthlayer.policies.objective_below_tier

import rego.v1

warn contains finding if {
	input.tier != 1
	some slo in input.slos
	slo.kind != "latency"
	slo.objective < input.tier_policy.availability
	finding := {
		"id": "objective-below-tier",
		"msg": sprintf("SLO %s has objective %v, below the %v of tier %d (%s): choose the tier whose bar the service meets", [slo.name, slo.objective, input.tier_policy.availability, input.tier, input.tier_name]),
		"pointer": slo.objective_pointer,
	}
}
