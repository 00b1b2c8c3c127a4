# tier1-objective (deny): every success-ratio SLO of a tier-1 service is at least as strict as tier 1's
# availability (0.999, from the tier table). Latency SLOs are left out: their objective is the share of
# requests under the threshold (p95 → 0.95), another scale.
package nthlayer.policies.tier1_objective

import rego.v1

deny contains finding if {
	input.tier == 1
	some slo in input.slos
	slo.kind != "latency"
	slo.objective < input.tier_policy.availability
	finding := {
		"id": "tier1-objective",
		"msg": sprintf("SLO %s of tier-1 service '%s' has objective %v, below tier 1's %v: a critical service's objectives are at least %v", [slo.name, input.service, slo.objective, input.tier_policy.availability, input.tier_policy.availability]),
		"pointer": slo.objective_pointer,
	}
}
