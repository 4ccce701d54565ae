package config

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// lookupTimeout bounds the DNS lookup Validate does for a host-name address.
const lookupTimeout = 5 * time.Second

// Validate checks every value against its allowed range and returns nil or
// one *Error per problem, joined with errors.Join:
//
//   - address: an IP literal or a host name that resolves (Validate looks it
//     up, for at most 5 s); it may be empty only when nic is set.
//   - nic: empty, or an interface that exists on this host.
//   - port: a decimal integer 0..65535 (0 = any free port).
//   - marsAddress: non-empty; an IP literal or a syntactically valid host
//     name, without a port. It is not resolved here.
//   - marsPort: a decimal integer 1..65535.
//   - marsAddressCacheTTL: 0..86400 seconds (0 = no cache).
//   - marsStore: "memory" or "etcd".
//   - marsEtcdEndpoints: empty, or comma-separated http(s) URLs with a
//     host; not empty when marsStore is "etcd". etcd is not contacted.
//   - retryInterval: 10..60000 milliseconds.
//   - retryTimeout: 100..600000 milliseconds, and greater than retryInterval.
//   - sendInterval: 0 (no buffering) or 17..60000 milliseconds.
//   - adminAddress: empty, or host:port with a port 0..65535.
//   - meshKey: empty, or the base64 of 32 bytes, not all zero.
//   - meshKeyFile: empty, or a readable file of 1..8 such keys (Validate
//     reads it; see Keys). Together with meshKey at most 8 keys.
func (m Mesh) Validate() error {
	return m.validate(nil)
}

func (m Mesh) validate(src origins) error {
	var errs []error
	bad := func(key, value, problem string) {
		errs = append(errs, src.errorFor(key, value, problem))
	}

	switch {
	case m.Address == "" && m.NIC == "":
		bad(keyAddress, quote(m.Address), "empty while nic is not set")
	case m.Address != "":
		if problem := checkHost(m.Address, keyPort); problem != "" {
			bad(keyAddress, quote(m.Address), problem)
		} else if problem := resolve(m.Address); problem != "" {
			bad(keyAddress, quote(m.Address), problem)
		}
	}
	if m.NIC != "" {
		if _, err := net.InterfaceByName(m.NIC); err != nil {
			e := src.errorFor(keyNIC, quote(m.NIC), "no such network interface")
			e.Allowed = nicAllowed()
			e.Err = err
			errs = append(errs, e)
		}
	}
	if _, problem := parsePort(m.Port, 0); problem != "" {
		bad(keyPort, quote(m.Port), problem)
	}
	if strings.TrimSpace(m.MarsAddress) == "" {
		bad(keyMarsAddress, quote(m.MarsAddress), "empty")
	} else {
		for _, h := range strings.Split(m.MarsAddress, ",") {
			h = strings.TrimSpace(h)
			problem := checkHost(h, keyMarsPort)
			if h == "" {
				problem = "an empty entry in the comma-separated list"
			}
			if problem != "" {
				if strings.Contains(m.MarsAddress, ",") {
					problem = "entry " + quote(h) + ": " + problem
				}
				bad(keyMarsAddress, quote(m.MarsAddress), problem)
				break
			}
		}
	}
	if _, problem := parsePort(m.MarsPort, 1); problem != "" {
		bad(keyMarsPort, quote(m.MarsPort), problem)
	}
	m.validateStore(bad)

	checkRange := func(key string, v, lo, hi int) bool {
		switch {
		case v < lo:
			bad(key, strconv.Itoa(v), "below the minimum "+strconv.Itoa(lo))
		case v > hi:
			bad(key, strconv.Itoa(v), "above the maximum "+strconv.Itoa(hi))
		default:
			return true
		}
		return false
	}
	checkRange(keyMarsAddressCacheTTL, m.MarsAddressCacheTTL, minMarsAddressCacheTTL, maxMarsAddressCacheTTL)
	intervalOK := checkRange(keyRetryInterval, m.RetryInterval, minRetryInterval, maxRetryInterval)
	timeoutOK := checkRange(keyRetryTimeout, m.RetryTimeout, minRetryTimeout, maxRetryTimeout)
	if intervalOK && timeoutOK && m.RetryTimeout <= m.RetryInterval {
		problem := "must be greater than retryInterval " + strconv.Itoa(m.RetryInterval)
		if o, ok := src[keyRetryInterval]; ok {
			if o.file != "" && src[keyRetryTimeout].file == o.file {
				problem += " (set at line " + strconv.Itoa(o.line) + ", column " + strconv.Itoa(o.col) + ")"
			} else {
				problem += " (set by " + o.String() + ")"
			}
		}
		bad(keyRetryTimeout, strconv.Itoa(m.RetryTimeout), problem)
	}
	if m.AdminAddress != "" {
		if _, port, err := net.SplitHostPort(m.AdminAddress); err != nil {
			bad(keyAdminAddress, quote(m.AdminAddress), "not host:port")
		} else if _, problem := parsePort(port, 0); problem != "" {
			bad(keyAdminAddress, quote(m.AdminAddress), "port "+problem)
		}
	}
	switch v := m.SendInterval; {
	case v < 0:
		bad(keySendInterval, strconv.Itoa(v), "negative")
	case v > 0 && v < minSendInterval:
		bad(keySendInterval, strconv.Itoa(v), "below the minimum "+strconv.Itoa(minSendInterval))
	case v > maxSendInterval:
		bad(keySendInterval, strconv.Itoa(v), "above the maximum "+strconv.Itoa(maxSendInterval))
	}
	if _, e := m.keys(src); e != nil {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// BindAddress returns the IP address the node binds to: the first IPv4
// address of NIC when NIC is set, else Address. It fails with an *Error
// naming the NIC when the interface does not exist or has no IPv4 address,
// and when both NIC and Address are empty.
func (m Mesh) BindAddress() (string, error) {
	if m.NIC == "" {
		if m.Address == "" {
			return "", newError(keyAddress, quote(m.Address), "empty while nic is not set")
		}
		return m.Address, nil
	}
	ifi, err := net.InterfaceByName(m.NIC)
	if err != nil {
		e := newError(keyNIC, quote(m.NIC), "no such network interface")
		e.Allowed = nicAllowed()
		e.Err = err
		return "", e
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		e := newError(keyNIC, quote(m.NIC), "cannot list the interface's addresses: "+err.Error())
		e.Err = err
		return "", e
	}
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if ip4 := ip.To4(); ip4 != nil {
			return ip4.String(), nil
		}
	}
	e := newError(keyNIC, quote(m.NIC), "the interface has no IPv4 address")
	e.Allowed = "an interface of this host with an IPv4 address"
	return "", e
}

// nicAllowed lists the interfaces of this host for error messages.
func nicAllowed() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "the name of a network interface of this host, or empty"
	}
	names := make([]string, len(ifs))
	for i, ifi := range ifs {
		names[i] = ifi.Name
	}
	return "an interface of this host (" + strings.Join(names, ", ") + "), or empty"
}

// parsePort parses a decimal port number no smaller than lo, or says why s
// is not one.
func parsePort(s string, lo int) (int, string) {
	if s == "" {
		return 0, "empty"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, "not a decimal integer"
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, "above the maximum 65535"
	}
	if n < lo {
		return 0, "below the minimum " + strconv.Itoa(lo)
	}
	return n, ""
}

// checkHost says why h is neither an IP literal nor a host name, or returns
// "". portKey names the key a port belongs in, for the "host:port" mistake.
func checkHost(h, portKey string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.HasPrefix(h, "[") {
		if host, _, err := net.SplitHostPort(h); err == nil {
			if _, err := netip.ParseAddr(host); err == nil {
				return "includes a port; write the address alone and put the port in " + portKey
			}
		}
		return "an IPv6 address in brackets; write it without them"
	}
	if strings.Count(h, ":") == 1 {
		return "includes a port; write the address alone and put the port in " + portKey
	}
	if strings.Contains(h, ":") {
		return "not a valid IP address"
	}
	if !validHostname(h) {
		return "not a valid IP address or host name"
	}
	return ""
}

// validHostname reports whether h is a syntactically valid host name:
// dot-separated labels of 1..63 letters, digits, '-' or '_' (no leading or
// trailing '-'), 253 characters at most, an optional final dot, and a last
// label that is not all digits (so "999.1.1.1" is a bad IPv4 address, not a
// name).
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// resolve says why the host name h does not resolve, or returns "".
func resolve(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, h)
	if err != nil {
		return "the host name does not resolve: " + err.Error()
	}
	if len(addrs) == 0 {
		return "the host name resolves to no address"
	}
	return ""
}
