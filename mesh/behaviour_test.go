package mesh

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// Behaviour checks of the public API: getters, data encoding, handler
// tables, the package-level API before and after Setup, guests, app
// namespaces, sync callbacks, random/sibling lookups and Shutdown.

// pkgIDs hands out command IDs for package-level handlers, which stay
// registered for the life of the process.
var pkgIDs atomic.Uint32

// useMarsEnv points Setup at port through DIARKIS_* variables.
func useMarsEnv(t *testing.T, marsPort string) {
	t.Helper()
	t.Setenv("DIARKIS_MARS_ADDR", "127.0.0.1")
	t.Setenv("DIARKIS_MARS_PORT", marsPort)
	t.Setenv("DIARKIS_PORT", "0")
	t.Setenv("DIARKIS_RETRY_INTERVAL", "200")
	t.Setenv("DIARKIS_RETRY_TIMEOUT", "1000")
}

// requireNoDefault fails if an earlier test left a default node behind.
func requireNoDefault(t *testing.T) {
	t.Helper()
	if Default() != nil {
		t.Fatal("a default node is still set up from an earlier test")
	}
}

func TestGettersNeverPanic(t *testing.T) {
	values := map[string]interface{}{
		"nil": nil, "true": true, "str": "abc", "numstr": "12", "empty": "", "bytes": []byte("xy"),
		"f1.5": 1.5, "f3": 3.0, "f-1": -1.0, "fbig": 1e300, "nan": math.NaN(), "inf": math.Inf(1), "-inf": math.Inf(-1),
		"i-5": int64(-5), "i2^40": int64(1) << 40, "umax": uint64(math.MaxUint64), "int": 7, "i8": int8(-3),
		"u8": uint8(200), "f32": float32(2), "map": map[string]interface{}{"a": 1}, "list": []interface{}{1},
		"struct": struct{}{}, "ptr": new(int),
	}
	getters := map[string]func(map[string]interface{}, string) interface{}{
		"GetBool":    func(m map[string]interface{}, k string) interface{} { return GetBool(m, k) },
		"GetBytes":   func(m map[string]interface{}, k string) interface{} { return GetBytes(m, k) },
		"GetFloat64": func(m map[string]interface{}, k string) interface{} { return GetFloat64(m, k) },
		"GetInt":     func(m map[string]interface{}, k string) interface{} { return GetInt(m, k) },
		"GetInt8":    func(m map[string]interface{}, k string) interface{} { return GetInt8(m, k) },
		"GetInt16":   func(m map[string]interface{}, k string) interface{} { return GetInt16(m, k) },
		"GetInt32":   func(m map[string]interface{}, k string) interface{} { return GetInt32(m, k) },
		"GetInt64":   func(m map[string]interface{}, k string) interface{} { return GetInt64(m, k) },
		"GetString":  func(m map[string]interface{}, k string) interface{} { return GetString(m, k) },
		"GetUint8":   func(m map[string]interface{}, k string) interface{} { return GetUint8(m, k) },
		"GetUint16":  func(m map[string]interface{}, k string) interface{} { return GetUint16(m, k) },
		"GetUint32":  func(m map[string]interface{}, k string) interface{} { return GetUint32(m, k) },
		"GetUint64":  func(m map[string]interface{}, k string) interface{} { return GetUint64(m, k) },
	}
	call := func(name string, get func(map[string]interface{}, string) interface{}, m map[string]interface{}, key string) (v interface{}) {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s(%q) panicked: %v", name, key, r)
			}
		}()
		return get(m, key)
	}
	for name, get := range getters {
		for key := range values {
			call(name, get, values, key)
		}
		call(name, get, values, "missing")
		call(name, get, nil, "x")
	}

	// Wrong types and values that do not fit give the zero value.
	for _, c := range []struct {
		what      string
		got, want interface{}
	}{
		{"GetInt on a string", GetInt(values, "str"), 0},
		{"GetInt on a bool", GetInt(values, "true"), 0},
		{"GetInt on a map", GetInt(values, "map"), 0},
		{"GetInt on 1.5", GetInt(values, "f1.5"), 0},
		{"GetInt on NaN", GetInt(values, "nan"), 0},
		{"GetInt on +Inf", GetInt(values, "inf"), 0},
		{"GetInt64 on 1e300", GetInt64(values, "fbig"), int64(0)},
		{"GetInt8 on uint8 200", GetInt8(values, "u8"), int8(0)},
		{"GetUint8 on -1.0", GetUint8(values, "f-1"), uint8(0)},
		{"GetUint32 on int64 -5", GetUint32(values, "i-5"), uint32(0)},
		{"GetInt32 on 2^40", GetInt32(values, "i2^40"), int32(0)},
		{"GetInt64 on MaxUint64", GetInt64(values, "umax"), int64(0)},
		{"GetBool on a string", GetBool(values, "str"), false},
		{"GetBool on missing", GetBool(values, "missing"), false},
		{"GetString on a number", GetString(values, "int"), ""},
		{"GetString on nil", GetString(values, "nil"), ""},
		{"GetFloat64 on a string", GetFloat64(values, "str"), 0.0},
		{"GetFloat64 on a bool", GetFloat64(values, "true"), 0.0},
		{"GetInt on a nil map", GetInt(nil, "x"), 0},
		// Numbers convert between widths when the value fits.
		{"GetInt on 3.0", GetInt(values, "f3"), 3},
		{"GetInt8 on int64 -5", GetInt8(values, "i-5"), int8(-5)},
		{"GetUint8 on uint8 200", GetUint8(values, "u8"), uint8(200)},
		{"GetInt16 on int8 -3", GetInt16(values, "i8"), int16(-3)},
		{"GetUint64 on MaxUint64", GetUint64(values, "umax"), uint64(math.MaxUint64)},
		{"GetFloat64 on int 7", GetFloat64(values, "int"), 7.0},
		{"GetFloat64 on float32 2", GetFloat64(values, "f32"), 2.0},
		{"GetString on []byte", GetString(values, "bytes"), "xy"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
	if GetBytes(values, "int") != nil || GetBytes(values, "missing") != nil {
		t.Error("GetBytes on a number or a missing field is not nil")
	}
	if string(GetBytes(values, "str")) != "abc" {
		t.Error("GetBytes on a string")
	}
}

// TestCreateBytesRoundTrip: CreateSendBytes bytes reach a HandleCommand
// handler as a map, and what it returns with CreateReturnBytes reaches the
// SendRequest callback as a map, every type readable with the getters.
func TestCreateBytesRoundTrip(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	type payload struct {
		Name  string                 `json:"name"`
		Level int                    `json:"level"`
		Delta int8                   `json:"delta"`
		Ratio float64                `json:"ratio"`
		OK    bool                   `json:"ok"`
		Blob  []byte                 `json:"blob"`
		Big   uint64                 `json:"big"`
		Extra map[string]interface{} `json:"extra"`
	}
	want := payload{Name: "ada", Level: 12, Delta: -3, Ratio: 0.25, OK: true, Blob: []byte{0, 1, 255}, Big: math.MaxUint64, Extra: map[string]interface{}{"k": "v"}}
	check := func(m map[string]interface{}) error {
		got := payload{
			Name: GetString(m, "name"), Level: GetInt(m, "level"), Delta: GetInt8(m, "delta"), Ratio: GetFloat64(m, "ratio"),
			OK: GetBool(m, "ok"), Blob: GetBytes(m, "blob"), Big: GetUint64(m, "big"),
		}
		extra, _ := m["extra"].(map[string]interface{})
		got.Extra = extra
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("decoded %+v, want %+v", got, want)
		}
		return nil
	}
	seen := make(chan error, 4)
	b.HandleCommand(1, func(m map[string]interface{}) ([]byte, error) {
		err := check(m)
		seen <- err
		if err != nil {
			return nil, err
		}
		return CreateReturnBytes(map[string]interface{}{
			"name": m["name"], "level": m["level"], "delta": m["delta"], "ratio": m["ratio"],
			"ok": m["ok"], "blob": m["blob"], "big": m["big"], "extra": m["extra"],
		})
	})
	asMap := map[string]interface{}{
		"name": want.Name, "level": want.Level, "delta": want.Delta, "ratio": want.Ratio,
		"ok": want.OK, "blob": want.Blob, "big": want.Big, "extra": want.Extra,
	}
	parcel := CreateRequestData()
	for k, v := range asMap {
		parcel.Set(k, v)
	}
	for _, data := range []interface{}{asMap, &want, want, parcel} {
		raw, err := CreateSendBytes(data)
		if err != nil {
			t.Fatalf("CreateSendBytes(%T): %v", data, err)
		}
		if err := a.Send(1, b.GetMyEndPoint(), raw); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-seen:
			if err != nil {
				t.Fatalf("Send of CreateSendBytes(%T): %v", data, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("Send of CreateSendBytes(%T) did not arrive", data)
		}
	}
	type result struct {
		err  error
		resp map[string]interface{}
	}
	done := make(chan result, 1)
	a.SendRequest(1, b.GetMyEndPoint(), &want, func(err error, resp map[string]interface{}) { done <- result{err, resp} })
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := <-seen; err != nil {
		t.Fatal(err)
	}
	if err := check(r.resp); err != nil {
		t.Fatalf("response: %v", err)
	}

	for _, bad := range []interface{}{[]byte("x"), 42, "text", []int{1}} {
		if _, err := CreateSendBytes(bad); !errors.Is(err, ErrInvalidData) {
			t.Errorf("CreateSendBytes(%T): %v", bad, err)
		}
		if _, err := CreateReturnBytes(bad); !errors.Is(err, ErrInvalidData) {
			t.Errorf("CreateReturnBytes(%T): %v", bad, err)
		}
	}
}

func TestValidateDataType(t *testing.T) {
	type s struct{ A int }
	var nilMap map[string]interface{}
	for _, c := range []struct {
		data interface{}
		want bool
	}{
		{map[string]interface{}{"a": 1}, true},
		{nilMap, true},
		{&s{}, true},
		{CreateRequestData(), true}, // a pointer to a struct
		{s{}, false},
		{nil, false},
		{[]byte("x"), false},
		{"x", false},
		{42, false},
		{new(int), false},
		{map[string]int{"a": 1}, false},
		{[]interface{}{1}, false},
	} {
		if got := ValidateDataType(c.data); got != c.want {
			t.Errorf("ValidateDataType(%T) = %v, want %v", c.data, got, c.want)
		}
	}
}

// TestIsCommandDuplicate: a second handler of an ID is added (all run,
// see TestSeveralHandlers) and reported; an ID with both an RPC and a
// command handler is reported too (as documented on Node.IsCommandDuplicate).
func TestIsCommandDuplicate(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	if b.IsCommandDuplicate(1) {
		t.Fatal("unused ID reported duplicate")
	}
	got := make(chan string, 3)
	if !b.HandleCommand(1, func(m map[string]interface{}) ([]byte, error) { got <- "first"; return nil, nil }) {
		t.Fatal("first HandleCommand refused")
	}
	if b.IsCommandDuplicate(1) {
		t.Fatal("duplicate after one handler")
	}
	if !b.HandleCommand(1, func(m map[string]interface{}) ([]byte, error) { got <- "second"; return nil, nil }) {
		t.Fatal("second HandleCommand refused")
	}
	if !b.SetCommandHandler(1, func([]byte, string) ([]byte, error) { got <- "raw"; return nil, nil }) {
		t.Fatal("SetCommandHandler on a used ID refused (it shares HandleCommand's table)")
	}
	if !b.IsCommandDuplicate(1) {
		t.Fatal("duplicate not reported")
	}
	if err := a.Send(1, b.GetMyEndPoint(), nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second", "raw"} {
		if h := <-got; h != want {
			t.Fatalf("handler %q ran, want %q", h, want)
		}
	}

	// One ID in both tables: both work, and it is reported.
	if !b.HandleRPC(2, func(d []byte, _ string) ([]byte, error) { return d, nil }) ||
		!b.SetCommandHandler(2, func([]byte, string) ([]byte, error) { got <- "cmd2"; return nil, nil }) {
		t.Fatal("RPC and command handlers of one ID refused")
	}
	if !b.IsCommandDuplicate(2) {
		t.Fatal("ID with an RPC and a command handler not reported")
	}
	if resp, err := a.SendRPC(2, b.GetMyEndPoint(), []byte("x")); err != nil || string(resp) != "x" {
		t.Fatalf("RPC 2: %q %v", resp, err)
	}
	a.Send(2, b.GetMyEndPoint(), nil)
	if h := <-got; h != "cmd2" {
		t.Fatalf("command 2 ran %q", h)
	}

	// Package level: the handler table of the default node.
	id := 7400 + uint16(pkgIDs.Add(2)) // the package-level table outlives the test (-count)
	if IsCommandDuplicate(id) {
		t.Fatal("package level: unused ID reported duplicate")
	}
	HandleCommand(id, func(map[string]interface{}) ([]byte, error) { return nil, nil })
	HandleCommand(id, func(map[string]interface{}) ([]byte, error) { return nil, nil })
	if !IsCommandDuplicate(id) {
		t.Fatal("package level: duplicate not reported")
	}
	first := HandleRPC(id+1, func([]byte, string) ([]byte, error) { return nil, nil })
	if !first || !HandleRPC(id+1, func([]byte, string) ([]byte, error) { return nil, nil }) {
		t.Fatal("package level: HandleRPC refused a handler")
	}
	if !IsCommandDuplicate(id + 1) {
		t.Fatal("package level: two RPC handlers not reported")
	}
}

// TestPackageLevelBeforeSetup: before Setup every lookup gives a zero
// value and every sender an error, without a panic; settings and callbacks
// given before Setup apply to the node Setup makes.
func TestPackageLevelBeforeSetup(t *testing.T) {
	requireNoDefault(t)
	c := newCluster(t, 1)
	useMarsEnv(t, c.cfg.MarsPort)
	other := c.nodes[0].GetMyEndPoint()

	zeros := map[string]interface{}{
		"GetNode": GetNode(other), "GetNodeByEndPoint": GetNodeByEndPoint("x:1"),
		"GetNodeAddresses": GetNodeAddresses(nil), "GetNodeAddressesByType": GetNodeAddressesByType("node"),
		"GetNodeAddressesByRole": GetNodeAddressesByRole(""), "GetNodeTypes": GetNodeTypes(),
		"GetNodeEndPoint": GetNodeEndPoint(other), "GetNodeMeshEndpoint": GetNodeMeshEndpoint("x:1"),
		"GetNodeRoleByAddress": GetNodeRoleByAddress(other), "GetNodeTypeByAddress": GetNodeTypeByAddress(other),
		"GetNodeRoleByType": GetNodeRoleByType("node"), "GetNodeValue": GetNodeValue(other, "v"),
		"GetNodeValues": GetNodeValues(other), "GetNodesWithDifferentPublicAddr": GetNodesWithDifferentPublicAddr(),
		"GetRandomNodeAddressByType": GetRandomNodeAddressByType("node"), "GetSiblingNodeAddress": GetSiblingNodeAddress(),
		"IsNodeOnline": IsNodeOnline(other), "IsNodeOffline": IsNodeOffline(other), "IsNodeTaken": IsNodeTaken(other),
		"IsMyNodeOnline": IsMyNodeOnline(), "IsMyNodeOffline": IsMyNodeOffline(), "IsMyNodeTaken": IsMyNodeTaken(),
		"GetMyEndPoint": GetMyEndPoint(), "GetMyNodeEndPoint": GetMyNodeEndPoint(), "GetMyNodeType": GetMyNodeType(),
		"GetNodeType": GetNodeType(), "GetNodeRole": GetNodeRole(), "GetMyNodeValue": GetMyNodeValue("v"),
		"IsPartOfCluster": IsPartOfCluster(), "SetSharedData": SetSharedData("k", 1), "RemoveSharedData": RemoveSharedData("k"),
	}
	for name, v := range zeros {
		switch x := v.(type) {
		case nil:
		case *Node:
			if x != nil {
				t.Errorf("%s before Setup = %+v", name, x)
			}
		case []string:
			if len(x) != 0 {
				t.Errorf("%s before Setup = %v", name, x)
			}
		case map[string]interface{}:
			if x != nil {
				t.Errorf("%s before Setup = %v", name, x)
			}
		case string:
			if x != "" {
				t.Errorf("%s before Setup = %q", name, x)
			}
		case bool:
			if x {
				t.Errorf("%s before Setup = true", name)
			}
		default:
			t.Errorf("%s before Setup = %#v", name, v)
		}
	}
	if v, ok := GetSharedData("k"); v != 0 || ok {
		t.Errorf("GetSharedData before Setup = %d %v", v, ok)
	}
	WaitForLatestNodeData() // returns at once
	for name, err := range map[string]error{
		"Send": Send(1, other, nil), "USend": USend(1, other, nil),
		"SendMany": SendMany(1, []string{other}, nil, 2), "USendMany": USendMany(1, []string{other}, nil, 2),
	} {
		if !IsSendError(err) || !errors.Is(err, ErrNotSetup) {
			t.Errorf("%s before Setup: %v", name, err)
		}
	}
	if _, err := SendRPC(1, other, nil); !IsUnhealthyError(err) || !errors.Is(err, ErrNotSetup) {
		t.Errorf("SendRPC before Setup: %v", err)
	}
	if _, err := SendRPCWithContext(context.Background(), 1, other, nil); !IsUnhealthyError(err) {
		t.Errorf("SendRPCWithContext before Setup: %v", err)
	}
	reqErr := make(chan error, 1)
	SendRequest(1, other, map[string]interface{}{}, func(err error, _ map[string]interface{}) { reqErr <- err })
	if err := <-reqErr; !IsUnhealthyError(err) {
		t.Errorf("SendRequest before Setup: %v", err)
	}
	if err := Shutdown(); err != nil {
		t.Errorf("Shutdown before Setup: %v", err)
	}

	// Settings and callbacks before Setup.
	app := fmt.Sprintf("pre-setup-%d", time.Now().UnixNano())
	SetNodeType("pre-type")
	SetNodeRole(TCPRole)
	SetEndPoint("203.0.113.9:7000")
	SetAppName(app)
	SetNodeValue("load", 5)
	SetStatus(StatusTaken)
	var initial, ready, update, updated atomic.Int32
	readyCh := make(chan bool, 1)
	OnInitialSync(func() { initial.Add(1) })
	OnReady(func() {
		ready.Add(1)
		readyCh <- IsPartOfCluster() && GetMyEndPoint() != ""
	})
	OnUpdate(func() { update.Add(1) })
	OnUpdated(func() { updated.Add(1) })
	var readinessAsked atomic.Bool
	SetCheckForShutdownReadiness(func() bool { readinessAsked.Store(true); return true })

	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	select {
	case ok := <-readyCh:
		if !ok {
			t.Error("OnReady ran before the node was part of the cluster")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("OnReady did not fire")
	}
	if initial.Load() != 1 || ready.Load() != 1 {
		t.Errorf("OnInitialSync fired %d times, OnReady %d", initial.Load(), ready.Load())
	}
	if GetNodeType() != "pre-type" || GetMyNodeType() != "pre-type" || GetNodeRole() != TCPRole ||
		GetMyNodeEndPoint() != "203.0.113.9:7000" || GetInt(map[string]interface{}{"v": GetMyNodeValue("load")}, "v") != 5 ||
		!IsMyNodeTaken() || IsMyNodeOnline() {
		t.Errorf("settings before Setup: type %q role %q endpoint %q load %v taken %v",
			GetNodeType(), GetNodeRole(), GetMyNodeEndPoint(), GetMyNodeValue("load"), IsMyNodeTaken())
	}
	// The app name put the node in its own namespace: the node in the
	// default app and this one do not see each other.
	self := GetMyEndPoint()
	c.nodes[0].WaitForLatestNodeData()
	WaitForLatestNodeData()
	if c.nodes[0].GetNode(self) != nil || GetNode(other) != nil || len(GetNodeAddresses(nil)) != 1 {
		t.Errorf("app namespaces leak: default app lists %v, %q lists %v", c.nodes[0].GetNodeAddresses(nil), app, GetNodeAddresses(nil))
	}
	eventually(t, 3*time.Second, func() bool { return update.Load() >= 2 && updated.Load() >= 2 }, "OnUpdate and OnUpdated fire on every sync")
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if !readinessAsked.Load() {
		t.Error("Shutdown did not ask the readiness check")
	}
	if Default() != nil || GetMyEndPoint() != "" || IsPartOfCluster() {
		t.Error("the default node is still there after Shutdown")
	}
	if err := Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
