// Package config holds the mesh configuration: the Diarkis keys, their
// defaults, JSON loading, DIARKIS_* environment overrides and validation.
//
// Load order: Default() -> JSON file -> environment -> Validate().
package config

import "time"

// Mesh is the configuration of one mesh node (and of the MARS address it
// talks to). JSON keys follow the Diarkis mesh configuration.
type Mesh struct {
	// Address is the IP the node binds its UDP port to.
	Address string `json:"address" envconfig:"ADDRESS"`
	// NIC, when set, names a network interface whose first IPv4 address
	// replaces Address.
	NIC string `json:"nic" envconfig:"NIC"`
	// Port is where the port scan starts ("0" = any free port). JSON
	// accepts a string or a number.
	Port string `json:"port" envconfig:"PORT"`
	// MarsAddress and MarsPort locate the MARS registry server.
	MarsAddress string `json:"marsAddress" envconfig:"MARS_ADDR"`
	MarsPort    string `json:"marsPort" envconfig:"MARS_PORT"`
	// MarsAddressCacheTTL is how long a resolved MARS address is reused, in seconds.
	MarsAddressCacheTTL int `json:"marsAddressCacheTTL" envconfig:"MARS_ADDRESS_CACHE_TTL"`
	// RetryInterval is the keepalive/retry interval in milliseconds.
	RetryInterval int `json:"retryInterval" envconfig:"RETRY_INTERVAL"`
	// RetryTimeout is how long a silent peer stays alive, in milliseconds.
	RetryTimeout int `json:"retryTimeout" envconfig:"RETRY_TIMEOUT"`
	// StrictCheckForExternal drops messages from senders MARS does not list.
	StrictCheckForExternal bool `json:"strictCheckForExternal" envconfig:"STRICT_CHECK_FOR_EXTERNAL"`
	// SendInterval buffers outgoing messages per peer for this many
	// milliseconds (0 = send at once; otherwise at least 17).
	SendInterval int `json:"sendInterval" envconfig:"SEND_INTERVAL"`
}

// Default returns the configuration with every default filled in.
func Default() Mesh {
	return Mesh{
		Address:             "127.0.0.1",
		Port:                "8000",
		MarsAddress:         "127.0.0.1",
		MarsPort:            "6789",
		MarsAddressCacheTTL: 60,
		RetryInterval:       1000,
		RetryTimeout:        3000,
	}
}

// RetryIntervalDuration returns RetryInterval as a time.Duration.
func (m Mesh) RetryIntervalDuration() time.Duration {
	return time.Duration(m.RetryInterval) * time.Millisecond
}

// RetryTimeoutDuration returns RetryTimeout as a time.Duration.
func (m Mesh) RetryTimeoutDuration() time.Duration {
	return time.Duration(m.RetryTimeout) * time.Millisecond
}

// SendIntervalDuration returns SendInterval as a time.Duration.
func (m Mesh) SendIntervalDuration() time.Duration {
	return time.Duration(m.SendInterval) * time.Millisecond
}

// MarsAddressCacheTTLDuration returns MarsAddressCacheTTL as a time.Duration.
func (m Mesh) MarsAddressCacheTTLDuration() time.Duration {
	return time.Duration(m.MarsAddressCacheTTL) * time.Second
}
