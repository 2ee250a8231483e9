package nodewire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// ContentType is the media type of both directions of the stream.
const ContentType = "application/x-gantry-frames"

// Version is the encoding this package writes and the only one it reads:
// JSON frames. A binary encoding would be a new version.
const Version = 1

// Frame types. The agent sends subscribe, unsubscribe, report and
// heartbeat; the server sends allocs, ack and ping.
const (
	// Subscribe asks for Node's allocations past Index (0: all of them).
	// Subscribing a node again replaces its subscription (a resume).
	Subscribe = "subscribe"
	// Unsubscribe ends Node's subscription.
	Unsubscribe = "unsubscribe"
	// Report carries Node's allocation reports (Updates); the server acks
	// Seq once they are committed (or refused).
	Report = "report"
	// Heartbeat renews Node's lease, with its latest usage Sample; the
	// server acks Seq.
	Heartbeat = "heartbeat"
	// Allocs is the server's answer for Node: what GET
	// /v1/nodes/{id}/allocations would answer past the node's index.
	Allocs = "allocs"
	// Ack answers the agent's frame Seq for Node: Status is the HTTP
	// status the matching endpoint would have answered (200: done) and
	// Error its sentence.
	Ack = "ack"
	// Ping says the stream is alive; the server sends one when it has
	// written nothing for PingInterval.
	Ping = "ping"
)

// PingInterval is how long the server stays silent at most; a client
// that hears nothing for DeadAfter takes the stream for dead.
const (
	PingInterval = 10 * time.Second
	DeadAfter    = 3 * PingInterval
)

// MaxNodeID bounds a node ID, as registration does.
const MaxNodeID = 64

// Frame is one message of the stream, either way. Only the fields of its
// Type are set.
type Frame struct {
	V       int                     `json:"v"`
	Type    string                  `json:"type"`
	Node    string                  `json:"node,omitempty"`
	Seq     uint64                  `json:"seq,omitempty"`
	Index   int64                   `json:"index,omitempty"`
	Allocs  *api.NodeAllocsResponse `json:"allocs,omitempty"`
	Updates []api.AllocUpdate       `json:"updates,omitempty"`
	Sample  *api.NodeSample         `json:"sample,omitempty"`
	Status  int                     `json:"status,omitempty"`
	Error   string                  `json:"error,omitempty"`
}

// Errors the decoder returns (wrapped, with the detail).
var (
	// ErrTooLarge: a frame's length is over the decoder's limit. The
	// stream cannot go on: the frame's bytes were not read.
	ErrTooLarge = errors.New("frame too large")
	// ErrMalformed: a frame is not valid JSON, has a version this
	// package does not read, has no type, or names no valid node where
	// its type needs one. The frame was read whole; the stream may go on.
	ErrMalformed = errors.New("malformed frame")
)

// Append appends f, encoded with its length, to buf. f.V is set to
// Version.
func Append(buf []byte, f *Frame) ([]byte, error) {
	f.V = Version
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	body, err := json.Marshal(f)
	if err != nil {
		return buf[:start], fmt.Errorf("encode %s frame: %w", f.Type, err)
	}
	buf = append(buf, body...)
	binary.BigEndian.PutUint32(buf[start:], uint32(len(body)))
	return buf, nil
}

// Decoder reads frames from a stream.
type Decoder struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewDecoder reads frames from r, refusing any longer than max bytes.
func NewDecoder(r io.Reader, max int) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Next reads the next frame. At the end of the stream between frames it
// returns io.EOF; in the middle of one, io.ErrUnexpectedEOF. A frame
// that is too large ends the stream (ErrTooLarge); a malformed one
// (ErrMalformed) is skipped whole, so the caller may answer it and go
// on.
func (d *Decoder) Next() (*Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(d.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(d.max) {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, n, d.max)
	}
	if cap(d.buf) < int(n) {
		d.buf = make([]byte, n)
	}
	body := d.buf[:n]
	if _, err := io.ReadFull(d.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if cap(d.buf) > 1<<20 {
		d.buf = nil // do not hold a large frame's buffer for the stream's life
	}
	return Decode(body)
}

// Decode reads one frame's body (without its length) and checks it. A
// frame that is valid JSON but fails a check is returned with the
// ErrMalformed error, so that its Seq can be answered. A type this
// package does not know is not an error here: a newer peer may send
// one, and the receiver decides.
func Decode(body []byte) (*Frame, error) {
	var f Frame
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if f.V != Version {
		return &f, fmt.Errorf("%w: version %d, this side reads %d", ErrMalformed, f.V, Version)
	}
	switch f.Type {
	case "":
		return &f, fmt.Errorf("%w: no type", ErrMalformed)
	case Subscribe, Unsubscribe, Report, Heartbeat, Allocs:
		if f.Node == "" || len(f.Node) > MaxNodeID {
			return &f, fmt.Errorf("%w: a %s frame needs a node ID of 1 to %d characters", ErrMalformed, f.Type, MaxNodeID)
		}
	}
	switch {
	case f.Type == Subscribe && f.Index < 0:
		return &f, fmt.Errorf("%w: subscribe index %d is negative", ErrMalformed, f.Index)
	case f.Type == Allocs && f.Allocs == nil:
		return &f, fmt.Errorf("%w: an allocs frame without allocations", ErrMalformed)
	}
	return &f, nil
}
