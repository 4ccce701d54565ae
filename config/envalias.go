package config

import (
	"os"
	"strings"
	"unicode"
)

// Environment aliases. Each key's variable is DIARKIS_ plus the key in
// upper snake case (marsAddressCacheTTL: DIARKIS_MARS_ADDRESS_CACHE_TTL),
// except marsAddress, whose variable keeps the Diarkis name
// DIARKIS_MARS_ADDR. The name a user derives from the JSON key is accepted
// too, for every key and every JSON alias: DIARKIS_MARS_ADDRESS and
// DIARKIS_RELIABLE_RETRY_TIMEOUT. Setting a key's variable and its alias
// to different values is an error.

// envAliases maps each accepted alias variable to the key it sets.
var envAliases = func() map[string]string {
	out := map[string]string{}
	for i := range fields {
		if guess := envName(fields[i].key); guess != fields[i].env {
			out[guess] = fields[i].key
		}
	}
	for alias, key := range aliases {
		if guess := envName(alias); guess != fieldByKey(key).env {
			out[guess] = key
		}
	}
	return out
}()

// envName is the variable a user derives from a JSON key: DIARKIS_ and
// the key in upper snake case.
func envName(key string) string {
	var b strings.Builder
	b.WriteString(envPrefix + "_")
	rs := []rune(key)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) && unicode.IsLower(rs[i-1]) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// aliasEnv returns the alias variable of key that is set in the
// environment, with its value ("", "", false when none is).
func aliasEnv(key string) (name, value string, ok bool) {
	for alias, k := range envAliases {
		if k != key {
			continue
		}
		if v, set := os.LookupEnv(alias); set {
			return alias, v, true
		}
	}
	return "", "", false
}
