# dependency-selector (warn): the same for every other dependency (caches, brokers, proxies, …): an
# unscoped dependency's alerts fire for every instance of its technology.
package nthlayer.policies.dependency_selector

import rego.v1

warn contains finding if {
	some tech in input.dependencies.technologies
	tech.category != "database"
	count(tech.selector) == 0
	finding := {
		"id": "dependency-selector",
		"msg": sprintf("dependency %s '%s' has no selector: its alerts would fire for every %s instance Prometheus scrapes", [tech.type, tech.name, tech.type]),
		"pointer": tech.pointer,
	}
}
