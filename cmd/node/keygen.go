package main

import (
	"context"
	"io"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/rudp"
)

// cmdKeygen prints a new random cluster key.
func cmdKeygen(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", "",
		"Prints a new random cluster key (32 bytes from crypto/rand, in base64) for meshKey\n"+
			"(DIARKIS_MESH_KEY) or a line of meshKeyFile (DIARKIS_MESH_KEY_FILE). Every node,\n"+
			"guest and MARS of a cluster needs the same key.")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	k, err := rudp.GenerateKey()
	if err != nil {
		return failure(stderr, fs.Name(), err)
	}
	_, err = io.WriteString(stdout, config.EncodeKey(k)+"\n")
	if err != nil {
		return failure(stderr, fs.Name(), err)
	}
	return exitOK
}
