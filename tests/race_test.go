//go:build race

package tests

// raceEnabled: the race detector's shadow memory makes this process large,
// and a child's ru_maxrss counts the address space it was forked from (Go
// forks with CLONE_VM), so a child's peak memory cannot be measured here.
const raceEnabled = true
