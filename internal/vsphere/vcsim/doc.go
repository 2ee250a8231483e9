// Package vcsim starts govmomi's vCenter simulator (the real vSphere SOAP
// API served in process) with a chosen inventory size, for tests, the
// benchmark and `gantry vsphere simulate`. It owns nothing of Gantry's
// state and must never be used by the server itself.
package vcsim
