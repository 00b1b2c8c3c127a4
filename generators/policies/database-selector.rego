# database-selector (deny): every database dependency names its instance with a selector. Without one,
# its alerts match every database of that technology Prometheus scrapes, and page this service's
# on-call for another team's database.
package nthlayer.policies.database_selector

import rego.v1

deny contains finding if {
	some tech in input.dependencies.technologies
	tech.category == "database"
	count(tech.selector) == 0
	finding := {
		"id": "database-selector",
		"msg": sprintf("database dependency %s '%s' has no selector: its alerts would fire for every %s instance Prometheus scrapes; add a selector naming this one (e.g. {cluster: %s})", [tech.type, tech.name, tech.type, tech.name]),
		"pointer": tech.pointer,
	}
}
