//go:build !race

package frontend

const raceOn = false
