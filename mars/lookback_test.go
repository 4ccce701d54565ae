package mars

import (
	"testing"
	"time"
)

// Disturbances that keep coming (a link that flaps every 2 s, shorter
// than the look-back's settle time) postpone the look-back only so far:
// it is asked within due, and the later disturbances get one of their own.
func TestLookBackNotStarvedByDisturbances(t *testing.T) {
	const interval = time.Second
	c := &Client{epoch: time.Now(), view: newView("n", 1)}
	c.cfg.Interval = interval
	c.view.marsInc, c.view.ver = 7, 10
	advance := func(d time.Duration) { c.epoch = c.epoch.Add(-d) }

	c.lookBackLater() // the first disturbance, the view at 10
	c.view.ver = 12
	asked := time.Duration(0)
	for step := 0; step < 10 && asked == 0; step++ {
		advance(2 * interval)
		if v := c.lookBackVer(7, c.view.ver); v != c.view.ver {
			if v != 10 {
				t.Fatalf("look-back from %d, want 10", v)
			}
			asked = time.Duration(step+1) * 2 * interval
			break
		}
		c.lookBackLater() // back again: another disturbance, the view at 12
	}
	if asked == 0 {
		t.Fatal("the look-back was never asked while disturbances kept coming")
	}
	if limit := 3*interval + 3*interval; asked > limit+2*interval {
		t.Fatalf("asked after %v, past its due time (%v after the first disturbance)", asked, limit)
	}
	// The sync that answers it covers it; the later disturbances' own
	// look-back follows, from the view's version at the first of them.
	c.view.ver = 13
	c.lookedBack(&syncHead{From: 10, To: 13})
	if c.look.from != 12 {
		t.Fatalf("queued look-back from %d, want 12", c.look.from)
	}
	advance(4 * interval)
	if v := c.lookBackVer(7, 13); v != 12 {
		t.Fatalf("second look-back from %d, want 12", v)
	}
	c.lookedBack(&syncHead{From: 12, To: 13})
	if c.look.from != 0 || c.look.next != 0 {
		t.Fatalf("look-back still pending: %+v", c.look)
	}
}
