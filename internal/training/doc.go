// Package training holds trainhook's domain: the model record, what Replicate
// reports about a training (an Observation), and the one pure function that
// decides how a report changes a record (Transition). It does no I/O.
package training
