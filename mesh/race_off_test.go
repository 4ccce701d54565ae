//go:build !race

package mesh

// raceEnabled: the race detector slows every goroutine several times.
const raceEnabled = false
