// Package archtest holds no code: its test checks the architecture rules
// of the whole module as one table (the layer order, which packages may
// import etcd and the Docker client, and which packages must stay pure).
// A rule that does not hold today is listed as a known exception with the
// reason, so that it cannot spread unnoticed and its removal is one line.
package archtest
