package pollwake

import (
	"testing"

	"github.com/marsmesh/marsmesh/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
