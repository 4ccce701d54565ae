package config

import (
	"strconv"
	"strings"
)

// Error is one bad configuration value, or a configuration file that cannot
// be read or parsed. Load, LoadFile, LoadEnv, Mesh.UnmarshalJSON,
// Mesh.Validate, Mesh.BindAddress and the port helpers return *Error values;
// when there are several problems they are joined with errors.Join. Use
// errors.As to inspect one.
//
// Error() reads, depending on where the value came from:
//
//	config: mesh.json:4:19: sendInterval=5: below the minimum 17 (allowed: ...)
//	config: env DIARKIS_SEND_INTERVAL="5" (sendInterval): below the minimum 17 (allowed: ...)
//	config: sendInterval=5: below the minimum 17 (allowed: ...)
type Error struct {
	// File is the JSON file the value came from, or "".
	File string
	// Line and Column locate the key or value in File (1-based, columns in
	// characters); 0 when unknown.
	Line, Column int
	// Var is the environment variable the value came from, or "".
	Var string
	// Key is the JSON key, or "" for a problem with the file as a whole.
	Key string
	// Value is the offending value as written: JSON text for values from a
	// file, quoted text for strings and for environment values.
	Value string
	// Problem says what is wrong.
	Problem string
	// Allowed says what would be accepted, or "".
	Allowed string
	// Err is the underlying error (a read error, a DNS error), or nil.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Var != "" {
		b.WriteString("env ")
		b.WriteString(e.Var)
		b.WriteString("=")
		b.WriteString(e.Value)
		if e.Key != "" {
			b.WriteString(" (")
			b.WriteString(e.Key)
			b.WriteString(")")
		}
		b.WriteString(": ")
	} else {
		if e.File != "" {
			b.WriteString(e.File)
			if e.Line > 0 {
				b.WriteString(":")
				b.WriteString(strconv.Itoa(e.Line))
				b.WriteString(":")
				b.WriteString(strconv.Itoa(e.Column))
			}
			b.WriteString(": ")
		}
		if e.Key != "" {
			b.WriteString(e.Key)
			if e.Value != "" {
				b.WriteString("=")
				b.WriteString(e.Value)
			}
			b.WriteString(": ")
		}
	}
	b.WriteString(e.Problem)
	if e.Allowed != "" {
		b.WriteString(" (allowed: ")
		b.WriteString(e.Allowed)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// newError returns an *Error for key with the key's allowed values filled in.
func newError(key, value, problem string) *Error {
	e := &Error{Key: key, Value: value, Problem: problem}
	if f := fieldByKey(key); f != nil {
		e.Allowed = f.allowed
	}
	return e
}

// origin records where a key's value came from while loading.
type origin struct {
	file      string
	line, col int
	env       string
}

func (o origin) String() string {
	if o.env != "" {
		return "env " + o.env
	}
	return o.file + ":" + strconv.Itoa(o.line) + ":" + strconv.Itoa(o.col)
}

// origins maps JSON keys to where their current values came from. A key
// that is absent still holds its default (or a value set in code). A nil
// origins is valid and knows nothing.
type origins map[string]origin

// errorFor is newError plus the key's origin.
func (o origins) errorFor(key, value, problem string) *Error {
	e := newError(key, value, problem)
	src, ok := o[key]
	if !ok {
		return e
	}
	if src.env != "" {
		e.Var = src.env
		if !strings.HasPrefix(value, `"`) {
			e.Value = strconv.Quote(value)
		}
		return e
	}
	e.File, e.Line, e.Column = src.file, src.line, src.col
	return e
}

// quote returns s as a Go/JSON-style quoted string.
func quote(s string) string { return strconv.Quote(s) }
