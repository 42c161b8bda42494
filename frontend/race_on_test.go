//go:build race

package frontend

// raceOn: the race detector slows sockets about tenfold; storms shrink.
const raceOn = true
