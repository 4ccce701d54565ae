package config

import (
	"maps"
	"slices"
	"sort"
	"strings"
)

// aliases are JSON keys accepted for another key. The Diarkis mesh
// documentation names the retry timeout "reliableRetryTimeout".
var aliases = map[string]string{
	"reliableRetryTimeout": keyRetryTimeout,
}

// didYouMean returns the known key (or alias) closest to key when it is
// within edit distance 2 (ignoring case), and whether only the case
// differs.
func didYouMean(key string) (near string, caseOnly bool) {
	best := 3
	lk := strings.ToLower(key)
	try := func(cand string) {
		if strings.EqualFold(cand, key) {
			near, caseOnly, best = cand, true, -1
			return
		}
		if d := editDistance(lk, strings.ToLower(cand)); d < best {
			near, best = cand, d
		}
	}
	for i := range fields {
		try(fields[i].key)
	}
	for a := range aliases {
		try(a)
	}
	return near, caseOnly
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnknownEnv returns a warning for every DIARKIS_* variable in environ
// (os.Environ() form, "NAME=value") that no configuration key reads and
// that is not in extra (variables a program reads itself), sorted by name,
// with a did-you-mean when a known variable is within edit distance 2,
// underscores aside (DIARKIS_MARSPORT: DIARKIS_MARS_PORT). Aliases
// (DIARKIS_MARS_ADDRESS) are known variables. Programs, and mesh.Setup,
// log each warning once at start-up.
func UnknownEnv(environ []string, extra ...string) []string {
	known := map[string]bool{}
	var names []string
	for i := range fields {
		known[fields[i].env] = true
		names = append(names, fields[i].env)
	}
	for a := range envAliases {
		known[a] = true
	}
	for _, e := range extra {
		known[e] = true
		names = append(names, e)
	}
	var out []string
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix+"_") || known[name] || seen[name] {
			continue
		}
		seen[name] = true
		w := "unknown environment variable " + name + " is ignored"
		if near := nearestEnv(name, names); near != "" {
			w += " (did you mean " + near + "?)"
		}
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

// nearestEnv returns the name of names (or the variable of an alias) within
// edit distance 2 of name, ignoring case and underscores, or "".
func nearestEnv(name string, names []string) string {
	squash := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "_", "")) }
	best, near := 3, ""
	try := func(cand, suggest string) {
		if d := editDistance(squash(name), squash(cand)); d < best {
			best, near = d, suggest
		}
	}
	for _, k := range names {
		try(k, k)
	}
	for _, a := range slices.Sorted(maps.Keys(envAliases)) {
		try(a, fieldByKey(envAliases[a]).env)
	}
	return near
}
