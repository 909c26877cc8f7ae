# The team's rule at ssf.deploy (beside the default rules of deploy.rego, which already demand verified factory
# provenance naming the image): in the namespaces listed, only images built by the listed pipelines run.
package ssf.deploy

# namespace -> the pipelines (metadata.name of the pipeline file) whose builds may run there. Namespaces not
# listed take any image the default rules admit. A pipeline's name is what its file says; what makes it mean
# something is the build gate: this factory builds only pipelines signed by a trusted key (team_build.rego), and
# the provenance is signed by the factory, after the build gate admitted the file
# (buildDefinition.internalParameters.policy names the policy set that did).
deploy_pipelines := {"prod": {"release"}}

deny contains msg if {
	allowed := deploy_pipelines[input.admission.namespace]
	not built_by_one_of(allowed)
	msg := sprintf("%s %s/%s: container %q runs %s, which was not built by a pipeline allowed in namespace %s (%v; built by %v)", [input.admission.kind, input.admission.namespace, input.admission.name, input.admission.container, input.admission.image, input.admission.namespace, sort(allowed), sort(built_by)])
}

# The pipelines named by the factory provenance of this image (the same checks as factory_provenance in deploy.rego).
built_by contains name if {
	some s in input.statements
	s.predicateType == "https://slsa.dev/provenance/v1"
	s.predicate.buildDefinition.buildType == "https://ssf.dev/buildtypes/pipeline/v1"
	trusted_builder(s.predicate.runDetails.builder.id)
	some subject in s.subject
	concat(":", ["sha256", subject.digest.sha256]) == input.artifact.digest
	name := s.predicate.buildDefinition.externalParameters.pipeline.name
}

built_by_one_of(allowed) if {
	some name in built_by
	name in allowed
}
