package mesh

import (
	"errors"
	"fmt"
	"strings"
)

// Topics are NATS-style: tokens separated by '.', e.g. "chat.eu.lobby".
// A subscription pattern may use "*" for exactly one token and ">" for one
// or more tokens at the end ("chat.*.lobby", "chat.>"); a published topic
// has no wildcards.

// Topic limits.
const (
	// MaxTopicLen is the longest topic or pattern, in bytes.
	MaxTopicLen = 255
	// MaxGroupLen is the longest queue group name, in bytes.
	MaxGroupLen = 64
)

// ErrBadTopic is wrapped by every error about a malformed topic, pattern
// or queue group name.
var ErrBadTopic = errors.New("mesh: bad topic")

// checkTopic validates a topic to publish to (no wildcards).
func checkTopic(topic string) error { return checkTokens(topic, false) }

// checkPattern validates a subscription pattern (wildcards allowed).
func checkPattern(pattern string) error { return checkTokens(pattern, true) }

func checkTokens(s string, wild bool) error {
	what := "topic"
	if wild {
		what = "pattern"
	}
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrBadTopic, what)
	case len(s) > MaxTopicLen:
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrBadTopic, what, len(s), MaxTopicLen)
	}
	rest := s
	for i := 0; ; i++ {
		tok, more, found := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return fmt.Errorf("%w: %s %q has an empty token (at %d)", ErrBadTopic, what, s, i)
		case strings.ContainsAny(tok, " \t\r\n"):
			return fmt.Errorf("%w: %s %q has white space in token %q", ErrBadTopic, what, s, tok)
		case (tok == "*" || tok == ">") && !wild:
			return fmt.Errorf("%w: topic %q has wildcard %q (only patterns may)", ErrBadTopic, s, tok)
		case tok == ">" && found:
			return fmt.Errorf("%w: pattern %q has '>' before its last token", ErrBadTopic, s)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w: %s %q has a wildcard inside token %q (a wildcard is a whole token)", ErrBadTopic, what, s, tok)
		}
		if !found {
			return nil
		}
		rest = more
	}
}

// checkGroup validates a queue group name: 1 to MaxGroupLen bytes, no
// white space.
func checkGroup(g string) error {
	switch {
	case g == "":
		return fmt.Errorf("%w: empty queue group", ErrBadTopic)
	case len(g) > MaxGroupLen:
		return fmt.Errorf("%w: queue group of %d bytes, limit %d", ErrBadTopic, len(g), MaxGroupLen)
	case strings.ContainsAny(g, " \t\r\n"):
		return fmt.Errorf("%w: queue group %q has white space", ErrBadTopic, g)
	}
	return nil
}

// matchTopic reports whether a valid topic matches a valid pattern.
func matchTopic(pattern, topic string) bool {
	for {
		ptok, prest, pmore := strings.Cut(pattern, ".")
		if ptok == ">" {
			return true // one or more tokens left: topic is not empty here
		}
		ttok, trest, tmore := strings.Cut(topic, ".")
		if ptok != "*" && ptok != ttok {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}
