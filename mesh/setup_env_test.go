package mesh

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

// TestSetupWarnsAboutUnknownEnv: Setup logs a misspelt DIARKIS_* name
// through the node's logger, with the name it probably meant.
func TestSetupWarnsAboutUnknownEnv(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0") // a port where no MARS answers
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	t.Setenv("DIARKIS_PORT", "0")
	t.Setenv("DIARKIS_MARS_PORT", strconv.Itoa(port))
	t.Setenv("DIARKIS_MARS_ADRESS", "127.0.0.9")
	var buf syncbuf.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)
	if err := Setup(""); err != nil {
		t.Fatal(err)
	}
	defer Shutdown()
	want := "unknown environment variable DIARKIS_MARS_ADRESS is ignored (did you mean DIARKIS_MARS_ADDR?)"
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("Setup logged:\n%s\nwant a line with %q", buf.String(), want)
	}
}
