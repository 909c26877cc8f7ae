package deps

// Env returns the environment a task needs to use the dependency tree at MountPoint offline, for the kinds of
// dependency the pipeline declares. npmScripts allows npm's install scripts (off unless a task opts in). A task's
// own env in the pipeline is applied after this, so a pipeline can override any of it.
func Env(kinds map[Kind]bool, npmScripts bool) []string {
	env := []string{"SSF_DEPS=" + MountPoint}
	if kinds[Gomod] {
		env = append(env, goEnv()...)
	}
	if kinds[Npm] {
		env = append(env, npmEnv(npmScripts)...)
	}
	return env
}
