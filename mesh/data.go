package mesh

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Parcel is a map-shaped message built field by field; Send and the other
// senders encode it with msgpack. It is not safe for concurrent use.
type Parcel struct {
	m map[string]interface{}
}

// NewParcel returns an empty Parcel.
func NewParcel() *Parcel { return &Parcel{m: make(map[string]interface{})} }

// CreateRequestData returns an empty Parcel for SendRequest, SendMany,
// USendMany, Send and USend.
func CreateRequestData() *Parcel { return NewParcel() }

// Set stores a value and returns the parcel, so calls chain.
func (p *Parcel) Set(name string, v interface{}) *Parcel {
	if p.m == nil {
		p.m = make(map[string]interface{})
	}
	p.m[name] = v
	return p
}

// Get returns a value and whether it is set.
func (p *Parcel) Get(name string) (interface{}, bool) {
	v, ok := p.m[name]
	return v, ok
}

// Map returns the parcel's fields (not a copy).
func (p *Parcel) Map() map[string]interface{} { return p.m }

var encPool = sync.Pool{New: func() any {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	e.SetCustomStructTag("json")
	return &encoder{buf: &buf, enc: e}
}}

type encoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

func marshal(v interface{}) ([]byte, error) {
	e := encPool.Get().(*encoder)
	defer encPool.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// emptyMap is msgpack for an empty map.
var emptyMap = []byte{0x80}

// encodeData turns what a sender was given into payload bytes.
func encodeData(data interface{}) ([]byte, error) {
	switch v := data.(type) {
	case nil:
		return emptyMap, nil
	case []byte:
		return v, nil
	case *Parcel:
		if v == nil {
			return emptyMap, nil
		}
		return marshal(v.m)
	case map[string]interface{}:
		return marshal(v)
	}
	if !isStruct(data) {
		return nil, fmt.Errorf("%w: %T (want a map[string]interface{}, a struct, a *Parcel or []byte)", ErrInvalidData, data)
	}
	return marshal(data)
}

func isStruct(data interface{}) bool {
	t := reflect.TypeOf(data)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != nil && t.Kind() == reflect.Struct
}

// ValidateDataType reports whether data is a pointer to a struct or a
// map[string]interface{}: what SendRequest accepts.
func ValidateDataType(data interface{}) bool {
	if _, ok := data.(map[string]interface{}); ok {
		return true
	}
	t := reflect.TypeOf(data)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct
}

// CreateSendBytes encodes a map, struct or *Parcel for Send, USend,
// SendMany, USendMany and SendRequest.
func CreateSendBytes(data interface{}) ([]byte, error) {
	if _, ok := data.([]byte); ok {
		return nil, fmt.Errorf("%w: already bytes", ErrInvalidData)
	}
	return encodeData(data)
}

// CreateReturnBytes encodes a handler's return value (map, struct or
// *Parcel) for HandleCommand.
func CreateReturnBytes(data interface{}) ([]byte, error) { return CreateSendBytes(data) }

// CreateResponseBytes is CreateReturnBytes.
func CreateResponseBytes(data interface{}) ([]byte, error) { return CreateSendBytes(data) }

// decodeMap decodes a msgpack payload into a map. Integers come back as
// int64 or uint64, floats as float64; an empty payload is an empty map.
func decodeMap(p []byte) (map[string]interface{}, error) {
	if len(p) == 0 {
		return map[string]interface{}{}, nil
	}
	d := msgpack.NewDecoder(bytes.NewReader(p))
	d.UseLooseInterfaceDecoding(true)
	d.SetCustomStructTag("json")
	v, err := d.DecodeInterfaceLoose()
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not msgpack: %v", ErrInvalidData, err)
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%w: payload is a %T, not a map", ErrInvalidData, v)
	}
	return m, nil
}

// The getters read one field of a decoded message. Unlike the reference
// API they never panic: a missing field or one of an unusable type gives
// the zero value. Numbers convert between widths when the value fits.

// GetBool returns a bool field.
func GetBool(data map[string]interface{}, name string) bool {
	b, _ := data[name].(bool)
	return b
}

// GetString returns a string field ([]byte is converted).
func GetString(data map[string]interface{}, name string) string {
	switch v := data[name].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// GetBytes returns a []byte field (a string is converted).
func GetBytes(data map[string]interface{}, name string) []byte {
	switch v := data[name].(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// GetFloat64 returns a numeric field as float64.
func GetFloat64(data map[string]interface{}, name string) float64 {
	switch v := data[name].(type) {
	case float64:
		return v
	case float32:
		return float64(v)
	}
	if i, ok := asInt64(data[name]); ok {
		return float64(i)
	}
	if u, ok := asUint64(data[name]); ok {
		return float64(u)
	}
	return 0
}

// GetInt returns a numeric field as int.
func GetInt(data map[string]interface{}, name string) int {
	return int(getSigned(data[name], math.MinInt, math.MaxInt))
}

// GetInt8 returns a numeric field as int8.
func GetInt8(data map[string]interface{}, name string) int8 {
	return int8(getSigned(data[name], math.MinInt8, math.MaxInt8))
}

// GetInt16 returns a numeric field as int16.
func GetInt16(data map[string]interface{}, name string) int16 {
	return int16(getSigned(data[name], math.MinInt16, math.MaxInt16))
}

// GetInt32 returns a numeric field as int32.
func GetInt32(data map[string]interface{}, name string) int32 {
	return int32(getSigned(data[name], math.MinInt32, math.MaxInt32))
}

// GetInt64 returns a numeric field as int64.
func GetInt64(data map[string]interface{}, name string) int64 {
	return getSigned(data[name], math.MinInt64, math.MaxInt64)
}

// GetUint8 returns a numeric field as uint8.
func GetUint8(data map[string]interface{}, name string) uint8 {
	return uint8(getUnsigned(data[name], math.MaxUint8))
}

// GetUint16 returns a numeric field as uint16.
func GetUint16(data map[string]interface{}, name string) uint16 {
	return uint16(getUnsigned(data[name], math.MaxUint16))
}

// GetUint32 returns a numeric field as uint32.
func GetUint32(data map[string]interface{}, name string) uint32 {
	return uint32(getUnsigned(data[name], math.MaxUint32))
}

// GetUint64 returns a numeric field as uint64.
func GetUint64(data map[string]interface{}, name string) uint64 {
	return getUnsigned(data[name], math.MaxUint64)
}

// getSigned converts v to an integer in [lo, hi], or 0 if it does not fit.
func getSigned(v interface{}, lo, hi int64) int64 {
	if i, ok := asInt64(v); ok && i >= lo && i <= hi {
		return i
	}
	if u, ok := asUint64(v); ok && u <= uint64(hi) {
		return int64(u)
	}
	// float64(hi)+1 is exact or rounds to a power of two; either way it
	// is the first integral float above hi (float64(MaxInt64) is 2^63).
	if f, ok := asFloat(v); ok && f == math.Trunc(f) && f >= float64(lo) && f < float64(hi)+1 {
		return int64(f)
	}
	return 0
}

// getUnsigned converts v to an integer in [0, hi], or 0 if it does not fit.
func getUnsigned(v interface{}, hi uint64) uint64 {
	if u, ok := asUint64(v); ok && u <= hi {
		return u
	}
	if i, ok := asInt64(v); ok && i >= 0 && uint64(i) <= hi {
		return uint64(i)
	}
	if f, ok := asFloat(v); ok && f == math.Trunc(f) && f >= 0 && f < float64(hi)+1 {
		return uint64(f)
	}
	return 0
}

func asInt64(v interface{}) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		return i, err == nil
	}
	return 0, false
}

func asUint64(v interface{}) (uint64, bool) {
	switch x := v.(type) {
	case uint:
		return uint64(x), true
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	return 0, false
}

func asFloat(v interface{}) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	return 0, false
}
