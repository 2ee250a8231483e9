package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"
)

// Commands that change something and then follow what they started (job
// run, revert, promote, stop) answer --json with a stream of JSON lines,
// one object per line, instead of text:
//
//	{"type":"response","response":{…the server's answer: versions, evaluation…}}
//	{"type":"step","time":"…","message":"Evaluation 1a2b3c4d: 3 placed, 0 stopped"}
//	{"type":"progress","time":"…","message":"3/3 placed, 3 running, 3 healthy, 0 complete (2.1s)"}
//	{"type":"result","exit_code":0}
//
// "step" lines are the text output's "==> " lines, "progress" its
// indented ones; the last line always says how the command ended.

// jsonEvent is one line of the stream.
type jsonEvent struct {
	Type     string    `json:"type"`
	Time     time.Time `json:"time,omitzero"`
	Message  string    `json:"message,omitempty"`
	Response any       `json:"response,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// jsonLines turns the text a command writes into JSON lines.
type jsonLines struct {
	enc *json.Encoder
	buf bytes.Buffer
}

func newJSONLines(w io.Writer) *jsonLines { return &jsonLines{enc: json.NewEncoder(w)} }

func (j *jsonLines) Write(p []byte) (int, error) {
	j.buf.Write(p)
	for {
		line, err := j.buf.ReadString('\n')
		if err != nil {
			j.buf.WriteString(line) // a partial line waits for its end
			return len(p), nil
		}
		line = strings.TrimRight(line, "\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		ev := jsonEvent{Type: "progress", Time: time.Now().UTC(), Message: strings.TrimSpace(line)}
		if msg, ok := strings.CutPrefix(line, "==> "); ok {
			ev.Type, ev.Message = "step", msg
		}
		if err := j.enc.Encode(ev); err != nil {
			return 0, err
		}
	}
}

// followJSON runs a command's follow-up with its text output turned into
// JSON lines, after a first line carrying the server's response, and ends
// the stream with the result.
func followJSON(g *globals, response any, follow func() error) error {
	jl := newJSONLines(g.out)
	jl.enc.Encode(jsonEvent{Type: "response", Response: response})
	out := g.out
	g.out = jl
	err := follow()
	g.out = out
	code := ExitOK
	res := jsonEvent{Type: "result"}
	var ee *exitError
	var es errSilent
	switch {
	case errors.As(err, &ee):
		code, res.Error = ee.Code, ee.Msg
	case errors.As(err, &es):
		code = es.code
	case err != nil:
		code, res.Error = ExitError, err.Error()
	}
	res.ExitCode = &code
	jl.enc.Encode(res)
	if code != ExitOK {
		return errSilent{code}
	}
	return nil
}
