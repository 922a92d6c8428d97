package bounded

// SandboxReport is what a plugin's Configure answered about its sandbox,
// as every kind's client keeps it: the description bounded like any text
// a plugin sends (the host shows it in its status).
type SandboxReport struct {
	sandboxed bool
	how       string
}

// Get says whether the plugin restricted itself, and how (or why not).
func (r *SandboxReport) Get() (bool, string) { return r.sandboxed, r.how }

// Set keeps a Configure answer.
func (r *SandboxReport) Set(sandboxed bool, how string) { r.sandboxed, r.how = sandboxed, Text(how) }
