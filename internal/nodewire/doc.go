// Package nodewire owns the frames of the node stream, the agent
// protocol's long-lived form (POST /v1/nodes/stream): what each frame
// holds, and how frames are laid out on the wire (a 4-byte big-endian
// length, then the frame as compact JSON with a version and a type, so
// that a binary form can come later under another version).
//
// The server (internal/server, stream.go) and the client
// (internal/apiclient, nodestream.go) both speak through it. It decides
// nothing about the protocol's behaviour (subscriptions, resume indexes,
// acknowledgements); it only encodes and decodes, and rejects what is not
// a well-formed frame. It does no I/O of its own beyond the reader it is
// handed.
package nodewire
