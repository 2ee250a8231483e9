package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/driver"
)

// Logs implements driver.Logs: the container's stdout or stderr,
// demultiplexed, optionally the last opts.Tail lines only, optionally
// followed until the container stops or the reader is closed.
//
// The engine's own tail counts stdout and stderr lines together, so a
// tail of one stream is computed here: the stream is read with timestamps,
// the last lines are kept, and a follow resumes right after the last one.
func (d *Driver) Logs(ctx context.Context, h *driver.Handle, opts driver.LogOptions) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	base := client.ContainerLogsOptions{ShowStdout: opts.Both || !opts.Stderr, ShowStderr: opts.Both || opts.Stderr}

	if opts.Tail <= 0 {
		o := base
		o.Follow = opts.Follow
		rc, err := d.containerLogs(ctx, h, o)
		if err != nil {
			cancel()
			return nil, err
		}
		go func() {
			defer cancel()
			defer rc.Close()
			_, err := stdcopy.StdCopy(pw, pw, rc)
			pw.CloseWithError(err)
		}()
		return &logReader{PipeReader: pr, cancel: cancel}, nil
	}

	o := base
	o.Timestamps = true
	rc, err := d.containerLogs(ctx, h, o)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer cancel()
		tail := &tailWriter{n: opts.Tail}
		_, err := stdcopy.StdCopy(tail, tail, rc)
		rc.Close()
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		for _, l := range tail.lines {
			if _, err := pw.Write(l.text); err != nil {
				return
			}
		}
		if !opts.Follow {
			pw.Close()
			return
		}
		o := base
		o.Follow, o.Timestamps = true, true
		if !tail.last.IsZero() {
			o.Since = tail.last.UTC().Format(time.RFC3339Nano)
		}
		frc, err := d.containerLogs(ctx, h, o)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		defer frc.Close()
		sw := &stripWriter{w: pw, after: tail.last}
		_, err = stdcopy.StdCopy(sw, sw, frc)
		pw.CloseWithError(err)
	}()
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

func (d *Driver) containerLogs(ctx context.Context, h *driver.Handle, o client.ContainerLogsOptions) (io.ReadCloser, error) {
	rc, err := d.cli.ContainerLogs(ctx, h.ID, o)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker: container %s: %w", h.ID, driver.ErrTaskNotFound)
		}
		return nil, fmt.Errorf("docker: logs of container %s: %w", h.ID, err)
	}
	return rc, nil
}

type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *logReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}

type logLine struct {
	at   time.Time
	text []byte
}

// splitTimestamp splits a message the engine sent with timestamps on:
// "<RFC3339Nano> <text>".
func splitTimestamp(msg []byte) (time.Time, []byte) {
	i := bytes.IndexByte(msg, ' ')
	if i < 0 {
		return time.Time{}, msg
	}
	t, err := time.Parse(time.RFC3339Nano, string(msg[:i]))
	if err != nil {
		return time.Time{}, msg
	}
	return t, msg[i+1:]
}

// tailWriter keeps the last n messages. stdcopy hands it one message per
// Write (one frame); a message is one line, or one piece of a line longer
// than the engine's 16 KiB buffer.
type tailWriter struct {
	n     int
	lines []logLine
	last  time.Time
}

func (t *tailWriter) Write(p []byte) (int, error) {
	at, text := splitTimestamp(p)
	if !at.IsZero() {
		t.last = at
	}
	t.lines = append(t.lines, logLine{at: at, text: bytes.Clone(text)})
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
	return len(p), nil
}

// stripWriter drops messages at or before after and the timestamps of the
// others.
type stripWriter struct {
	w     io.Writer
	after time.Time
}

func (s *stripWriter) Write(p []byte) (int, error) {
	at, text := splitTimestamp(p)
	if !s.after.IsZero() && !at.IsZero() && !at.After(s.after) {
		return len(p), nil
	}
	if _, err := s.w.Write(text); err != nil {
		return 0, err
	}
	return len(p), nil
}
