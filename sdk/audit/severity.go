package audit

import "fmt"

// Severity is the closed set of audit severities. Each event type has a
// fixed severity in the catalogue; callers cannot choose or lower it.
type Severity uint8

const (
	Info Severity = iota + 1
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{Info: "INFO", Low: "LOW", Medium: "MEDIUM", High: "HIGH", Critical: "CRITICAL"}

// Severities lists every severity from the lowest.
func Severities() []Severity { return []Severity{Info, Low, Medium, High, Critical} }

// Valid reports whether s is one of the five severities.
func (s Severity) Valid() bool { return s >= Info && s <= Critical }

func (s Severity) String() string {
	if s.Valid() {
		return severityNames[s]
	}
	return fmt.Sprintf("Severity(%d)", uint8(s))
}

// ParseSeverity is the inverse of String.
func ParseSeverity(name string) (Severity, error) {
	for _, s := range Severities() {
		if severityNames[s] == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q", name)
}
