package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// KeySize is the length of a cluster key in bytes.
const KeySize = 32

// Bounds of a key file.
const (
	// MaxKeys is the most keys Keys returns (meshKey and the file's
	// together): rotation needs two or three. It equals rudp.MaxKeys.
	MaxKeys = 8
	// maxKeyFileSize bounds what is read of meshKeyFile.
	maxKeyFileSize = 64 << 10
)

// Keys returns the cluster keys, or nil when neither meshKey nor
// meshKeyFile is set (no key: traffic is neither authenticated nor
// encrypted). meshKey comes first, then the keys of meshKeyFile in file
// order; a key given twice is kept once. They become rudp.Config.Keys: a
// process dials with each key, the first first, and accepts a peer that
// holds any of them, which is how a key is rotated without downtime.
//
// Keys reads meshKeyFile on every call. A key that is not base64 of
// KeySize bytes, or all zero, and a file that cannot be read, holds no key
// or holds more than MaxKeys, are an *Error naming the source (the key or
// the file and line); the key itself never appears in an error.
func (m Mesh) Keys() ([][KeySize]byte, error) {
	keys, err := m.keys(nil)
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// keys is Keys with errors that name where meshKey and meshKeyFile were
// set (src may be nil).
func (m Mesh) keys(src origins) ([][KeySize]byte, *Error) {
	var out [][KeySize]byte
	add := func(k [KeySize]byte) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if m.MeshKey != "" {
		k, problem := parseKey(m.MeshKey)
		if problem != "" {
			e := src.errorFor(keyMeshKey, "", problem)
			e.Value = redacted(m.MeshKey)
			return nil, e
		}
		add(k)
	}
	if m.MeshKeyFile != "" {
		keys, problem, err := readKeyFile(m.MeshKeyFile)
		if problem != "" {
			e := src.errorFor(keyMeshKeyFile, quote(m.MeshKeyFile), problem)
			e.Err = err
			return nil, e
		}
		for _, k := range keys {
			add(k)
		}
	}
	if len(out) > MaxKeys {
		return nil, src.errorFor(keyMeshKeyFile, quote(m.MeshKeyFile),
			"meshKey and the file hold "+strconv.Itoa(len(out))+" different keys, more than "+strconv.Itoa(MaxKeys))
	}
	return out, nil
}

// ParseKey decodes one cluster key: the base64 text of KeySize bytes
// (standard or URL alphabet, with or without padding; surrounding white
// space is ignored). On error it returns an *Error for the key meshKey
// that does not repeat the text.
func ParseKey(s string) ([KeySize]byte, error) {
	k, problem := parseKey(s)
	if problem != "" {
		e := newError(keyMeshKey, redacted(s), problem)
		return [KeySize]byte{}, e
	}
	return k, nil
}

// EncodeKey returns the text form of a key that ParseKey, meshKey and
// meshKeyFile read: standard base64 with padding, 44 characters.
func EncodeKey(k [KeySize]byte) string { return base64.StdEncoding.EncodeToString(k[:]) }

// parseKey decodes one key or says why it cannot.
func parseKey(s string) ([KeySize]byte, string) {
	var k [KeySize]byte
	s = strings.TrimSpace(s)
	if s == "" {
		return k, "empty"
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	switch {
	case err != nil && strings.ContainsAny(s, `"'`):
		return k, "not base64 (it holds quote marks; write the key without them)"
	case err != nil:
		return k, "not base64"
	case len(raw) != KeySize:
		problem := "decodes to " + strconv.Itoa(len(raw)) + " bytes, want " + strconv.Itoa(KeySize)
		if len(raw) == 1 {
			problem = "decodes to 1 byte, want " + strconv.Itoa(KeySize)
		}
		if _, herr := hex.DecodeString(s); herr == nil && len(s) == 2*KeySize {
			problem += " (it looks like hex; write the key in base64)"
		}
		return k, problem
	}
	copy(k[:], raw)
	if k == ([KeySize]byte{}) {
		return k, "all " + strconv.Itoa(KeySize) + " bytes are zero: not a random key"
	}
	return k, ""
}

// readKeyFile reads the keys of a key file: one per line, blank lines and
// lines starting with '#' ignored. It returns the keys, or the read error
// or a problem and the read error (if any).
func readKeyFile(path string) ([][KeySize]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "cannot read the key file: " + err.Error(), err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, "cannot read the key file: " + err.Error(), err
	}
	if len(data) > maxKeyFileSize {
		return nil, "the key file is larger than " + strconv.Itoa(maxKeyFileSize>>10) + " KiB: not a key file", nil
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var keys [][KeySize]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, problem := parseKey(line)
		if problem != "" {
			return nil, "line " + strconv.Itoa(i+1) + " of the key file: " + problem, nil
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, "the key file holds no key (only blank lines and comments)", nil
	}
	return keys, "", nil
}

// redacted describes a secret without showing it.
func redacted(s string) string {
	return "<redacted, " + strconv.Itoa(len(s)) + " characters>"
}
