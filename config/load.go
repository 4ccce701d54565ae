package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kelseyhightower/envconfig"
)

// envPrefix is the prefix of every environment variable.
const envPrefix = "DIARKIS"

// Load returns the configuration of one node: Default(), then the JSON file
// at path (skipped when path is ""), then the DIARKIS_* environment, then
// Validate. On error it returns the zero Mesh and an error built from
// *Error values that name the file (with line and column) or the
// environment variable, the key, the value and what is allowed.
func Load(path string) (Mesh, error) {
	m := Default()
	src := origins{}
	if path != "" {
		if err := loadFile(path, &m, src); err != nil {
			return Mesh{}, err
		}
	}
	if err := loadEnv(&m, src); err != nil {
		return Mesh{}, err
	}
	if err := m.validate(src); err != nil {
		return Mesh{}, err
	}
	return m, nil
}

// LoadFile applies the JSON file at path over m: keys present in the file
// replace m's values, absent keys keep them. It rejects a file that is not
// a JSON object, unknown or duplicate keys (keys are case-sensitive) and
// values of the wrong type, leaving m untouched; it does not check ranges
// (call Validate). port and marsPort may be strings or integer numbers;
// every other number must be an integer literal (1000, not 1e3 or 1000.0).
func LoadFile(path string, m *Mesh) error {
	return loadFile(path, m, nil)
}

// LoadEnv applies the DIARKIS_* environment variables over m, leaving m
// untouched on error. It does not check ranges (call Validate).
//
// An unset variable leaves m's value alone. Values are trimmed of
// surrounding white space. A variable that is set but empty is treated as
// unset for numbers and booleans (port, marsPort, marsAddressCacheTTL,
// retryInterval, retryTimeout, sendInterval, strictCheckForExternal); for
// strings (address, nic, marsAddress) it sets the empty string, so
// DIARKIS_NIC= turns off a NIC set in the file, and DIARKIS_ADDRESS= is
// valid only together with a NIC. DIARKIS_MESH_KEY and
// DIARKIS_MESH_KEY_FILE set but empty are errors, so that an unset shell
// variable never turns the cluster key off. Numbers are decimal integers; booleans
// are anything strconv.ParseBool takes (true/false, 1/0, t/f).
//
// Only the exact prefixed names are read: unlike envconfig.Process on a
// tagged struct, LoadEnv never falls back to an unprefixed PORT or ADDRESS.
func LoadEnv(m *Mesh) error {
	return loadEnv(m, nil)
}

// UnmarshalJSON applies a JSON object of mesh keys over m, with the same
// rules as LoadFile. It lets a Mesh be embedded in a larger JSON document
// and still be decoded strictly.
func (m *Mesh) UnmarshalJSON(data []byte) error {
	return decode(data, "", m, nil)
}

func loadFile(path string, m *Mesh, src origins) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{File: path, Problem: "cannot read the file: " + err.Error(), Err: err}
	}
	return decode(data, path, m, src)
}

// decode applies the JSON object in data over m. file names the source in
// errors ("" for none); when it is set, errors carry line and column and
// src (if not nil) learns where each key came from.
func decode(data []byte, file string, m *Mesh, src origins) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 BOM from some editors
	errAt := func(off int, key, value, problem string) *Error {
		e := newError(key, value, problem)
		e.File = file
		if file != "" {
			e.Line, e.Column = position(data, off)
		}
		return e
	}

	if len(bytes.TrimSpace(data)) == 0 {
		e := errAt(0, "", "", "the file is empty")
		e.Allowed = `a JSON object of mesh keys, e.g. {"port": "8000"}`
		return e
	}
	// Check the syntax of the whole document first: json.Unmarshal reports
	// offsets from the start of data, which the streaming decoder does not.
	var whole json.RawMessage
	if err := json.Unmarshal(data, &whole); err != nil {
		off := len(data)
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset > 0 && !strings.Contains(se.Error(), "unexpected end") {
			off = int(se.Offset) - 1 // Offset counts the bytes read, including the bad one
		}
		e := errAt(off, "", "", "invalid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
		e.Err = err
		return e
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return errAt(0, "", "", "invalid JSON: "+err.Error())
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		start := len(data) - len(bytes.TrimLeft(data, " \t\r\n"))
		e := errAt(start, "", "", "the top level is "+jsonKind(data[start:])+", not an object")
		e.Allowed = `a JSON object of mesh keys, e.g. {"port": "8000"}`
		return e
	}

	c := *m
	seen := map[string]origin{}
	for dec.More() {
		keyOff := skipSeparators(data, int(dec.InputOffset()))
		tok, err := dec.Token()
		if err != nil {
			return errAt(keyOff, "", "", "invalid JSON: "+err.Error())
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return errAt(keyOff, key, "", "invalid JSON: "+err.Error())
		}
		valOff := int(dec.InputOffset()) - len(raw)

		if canon, ok := aliases[key]; ok {
			key = canon // an alias sets its key; using both is a duplicate
		}
		f := fieldByKey(key)
		if f == nil {
			e := errAt(keyOff, "", "", "unknown key "+quote(key))
			e.Allowed = "the keys " + keyList()
			if near, caseOnly := didYouMean(key); near != "" {
				if caseOnly {
					e.Problem += " (keys are case-sensitive: did you mean " + quote(near) + "?)"
				} else {
					e.Problem += " (did you mean " + quote(near) + "?)"
				}
				e.Allowed = ""
			}
			return e
		}
		if first, dup := seen[key]; dup {
			problem := "duplicate key"
			if file != "" {
				problem += " (first at line " + strconv.Itoa(first.line) + ", column " + strconv.Itoa(first.col) + ")"
			}
			e := errAt(keyOff, key, "", problem)
			e.Allowed = ""
			return e
		}
		o := origin{file: file}
		o.line, o.col = position(data, valOff)
		seen[key] = o

		if problem := setJSON(f, raw, &c); problem != "" {
			value := shorten(string(raw))
			if f.secret {
				value = redacted(string(raw))
			}
			return errAt(valOff, key, value, problem)
		}
	}
	*m = c
	if src != nil && file != "" {
		for k, o := range seen {
			src[k] = o
		}
	}
	return nil
}

// setJSON stores the JSON value raw of field f in c, or says why it cannot.
func setJSON(f *field, raw json.RawMessage, c *Mesh) string {
	got := jsonKind(raw)
	switch f.kind {
	case kindString:
		var s string
		if got != "a string" || json.Unmarshal(raw, &s) != nil {
			return "wrong type: want a string, got " + got
		}
		*f.str(c) = s
	case kindPort:
		switch got {
		case "a string":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "wrong type: want a string or an integer, got " + got
			}
			*f.str(c) = s
		case "a number":
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return numberProblem(err)
			}
			*f.str(c) = strconv.FormatInt(n, 10)
		default:
			return "wrong type: want a string or an integer, got " + got
		}
	case kindInt:
		if got != "a number" {
			return "wrong type: want an integer, got " + got
		}
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return numberProblem(err)
		}
		*f.num(c) = n
	case kindBool:
		if got != "a boolean" {
			return "wrong type: want true or false, got " + got
		}
		*f.flag(c) = string(raw) == "true"
	}
	return ""
}

// numberProblem explains why a JSON number or environment value is not an
// acceptable integer.
func numberProblem(err error) string {
	if errors.Is(err, strconv.ErrRange) {
		return "out of range"
	}
	return "not an integer"
}

// jsonKind names the kind of the JSON value that starts raw.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// shorten keeps long values readable in error messages.
func shorten(s string) string {
	const limit = 60
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit]) + "..."
}

// skipSeparators returns the offset of the first byte at or after off that
// is neither white space nor a comma.
func skipSeparators(data []byte, off int) int {
	for off < len(data) && strings.IndexByte(" \t\r\n,", data[off]) >= 0 {
		off++
	}
	return off
}

// position returns the 1-based line and column (in characters) of byte
// offset off in data.
func position(data []byte, off int) (line, col int) {
	off = min(max(off, 0), len(data))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCount(before[lineStart:])
}

// keyList returns every key, comma-separated.
func keyList() string {
	keys := make([]string, len(fields))
	for i := range fields {
		keys[i] = fields[i].key
	}
	return strings.Join(keys, ", ")
}

// envVars is what envconfig reads: one *string per variable, so that an
// unset variable (nil) differs from a set but empty one. There are no
// envconfig tags on purpose: with a tag, envconfig v1.4.0 falls back to the
// bare tag name (PORT, ADDRESS, NIC) when the prefixed variable is unset.
// With split_words and the "DIARKIS" prefix the field names give exactly
// DIARKIS_ADDRESS, DIARKIS_NIC, DIARKIS_PORT, DIARKIS_MARS_ADDR,
// DIARKIS_MARS_PORT, DIARKIS_MARS_ADDRESS_CACHE_TTL, DIARKIS_MARS_STORE,
// DIARKIS_MARS_ETCD_ENDPOINTS, DIARKIS_RETRY_INTERVAL,
// DIARKIS_RETRY_TIMEOUT, DIARKIS_STRICT_CHECK_FOR_EXTERNAL,
// DIARKIS_SEND_INTERVAL, DIARKIS_ADMIN_ADDRESS, DIARKIS_MESH_KEY and
// DIARKIS_MESH_KEY_FILE (a test checks this against the field table).
type envVars struct {
	Address                *string `split_words:"true"`
	NIC                    *string
	Port                   *string
	MarsAddr               *string `split_words:"true"`
	MarsPort               *string `split_words:"true"`
	MarsAddressCacheTTL    *string `split_words:"true"`
	MarsStore              *string `split_words:"true"`
	MarsEtcdEndpoints      *string `split_words:"true"`
	RetryInterval          *string `split_words:"true"`
	RetryTimeout           *string `split_words:"true"`
	StrictCheckForExternal *string `split_words:"true"`
	SendInterval           *string `split_words:"true"`
	AdminAddress           *string `split_words:"true"`
	MeshKey                *string `split_words:"true"`
	MeshKeyFile            *string `split_words:"true"`
}

// loadEnv applies the environment over m (see LoadEnv) and, if src is not
// nil, records which keys the environment set.
func loadEnv(m *Mesh, src origins) error {
	var ev envVars
	if err := envconfig.Process(envPrefix, &ev); err != nil {
		return &Error{Problem: "cannot read the DIARKIS_* environment: " + err.Error(), Err: err}
	}
	c := *m
	set := map[string]origin{}
	var errs []error
	for i := range fields {
		f := &fields[i]
		p, name := f.fromEnv(&ev), f.env
		if alias, av, ok := aliasEnv(f.key); ok {
			if p != nil && strings.TrimSpace(*p) != strings.TrimSpace(av) {
				e := newError(f.key, quote(*p), "set, and its alias "+alias+" is set to "+quote(av)+"; unset one of them")
				e.Var = f.env
				errs = append(errs, e)
				continue
			}
			p, name = &av, alias
		}
		if p == nil {
			continue
		}
		v := strings.TrimSpace(*p)
		bad := func(problem string) {
			e := newError(f.key, quote(*p), problem)
			e.Var = name
			errs = append(errs, e)
		}
		if v == "" && f.noEmptyEnv {
			bad("set but empty; unset the variable to run without a cluster key")
			continue
		}
		if v == "" && f.kind != kindString {
			continue // set but empty: a number or boolean is treated as unset
		}
		switch f.kind {
		case kindString, kindPort:
			*f.str(&c) = v
		case kindInt:
			n, err := strconv.Atoi(v)
			if err != nil {
				bad(numberProblem(err))
				continue
			}
			*f.num(&c) = n
		case kindBool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad("not a boolean")
				continue
			}
			*f.flag(&c) = b
		}
		set[f.key] = origin{env: name}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*m = c
	for k, o := range set {
		if src != nil {
			src[k] = o
		}
	}
	return nil
}
