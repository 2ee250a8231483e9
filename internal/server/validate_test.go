package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// post sends a JSON body and decodes the answer into out (when it is
// 200), returning the status and the raw body.
func post(t *testing.T, url, token, body string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gantry-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("answer is not JSON: %v\n%s", err, data)
		}
	}
	return resp.StatusCode, string(data)
}

// TestValidateAgainstTheCluster: POST /v1/validate/job reports what the
// cluster's shape cannot place; register accepts the same job and warns
// with the same words; a job-internal problem is rejected on register
// with the message validate gives.
func TestValidateAgainstTheCluster(t *testing.T) {
	s, base := aclServer(t)
	ctx := context.Background()
	secret, _ := acl.NewSecret()
	if err := s.store.PutToken(ctx, &acl.Token{AccessorID: "m", Name: "m", SecretHash: acl.Hash(secret), Management: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.store.RegisterNode(ctx, schedtest.Node("n1"), time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.store.Nodes()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node never showed in the store")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !s.IsLeader(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never led")
		}
	}

	huge := `{"name":"huge","type":"batch","groups":[{"name":"g","tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":64000,"memory":10}}]}]}`
	const cpuMsg = "asks 64000 millicores, but the largest node, n1, can hold 4000 even when empty; lower it or add a bigger node"
	var vr api.ValidateResponse
	if code, body := post(t, base+"/v1/validate/job", secret, huge, &vr); code != http.StatusOK {
		t.Fatalf("validate: %d %s", code, body)
	}
	if vr.Valid || !vr.Cluster || vr.Nodes != 1 || len(vr.Errors) != 0 || len(vr.Placement) != 1 ||
		vr.Placement[0].Path != "groups[0].tasks[0].resources.cpu" || vr.Placement[0].Message != cpuMsg || vr.Placement[0].Line != 1 {
		t.Fatalf("validate of a job no node can hold: %+v", vr)
	}
	var rr api.RegisterResponse
	if code, body := post(t, base+"/v1/jobs", secret, huge, &rr); code != http.StatusOK {
		t.Fatalf("register of an unplaceable job must succeed (nodes may join): %d %s", code, body)
	}
	if len(rr.Placement) != 1 || rr.Placement[0].Message != cpuMsg {
		t.Fatalf("register does not warn with validate's words: %+v", rr)
	}

	canary := `{"name":"web","groups":[{"name":"g","count":2,"update":{"canary":3},"tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":10,"memory":10}}]}]}`
	const canaryMsg = "asks for 3 canaries but the group runs only 2 replicas; each canary stands in for an old replica, so set canary to at most 2"
	vr = api.ValidateResponse{}
	post(t, base+"/v1/validate/job", secret, canary, &vr)
	if vr.Valid || len(vr.Errors) != 1 || vr.Errors[0].Path != "groups[0].update.canary" || vr.Errors[0].Message != canaryMsg {
		t.Fatalf("validate of a canary beyond count: %+v", vr)
	}
	code, body := post(t, base+"/v1/jobs", secret, canary, nil)
	var ae api.Error
	if code != http.StatusBadRequest || !strings.Contains(body, "groups[0].update.canary: "+canaryMsg) ||
		json.Unmarshal([]byte(body), &ae) != nil || len(ae.Errors) != 1 || ae.Errors[0].Path != "groups[0].update.canary" || ae.Errors[0].Message != canaryMsg {
		t.Fatalf("register of a canary beyond count: %d %s", code, body)
	}
	if _, ok := s.store.Job("default", "web"); ok {
		t.Fatal("a rejected job was stored")
	}

	// A good job: valid, exit 0 in the CLI.
	good := `{"name":"ok","groups":[{"name":"g","tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":10,"memory":10}}]}]}`
	vr = api.ValidateResponse{}
	post(t, base+"/v1/validate/job", secret, good, &vr)
	if !vr.Valid || len(vr.Errors)+len(vr.Placement)+len(vr.Warnings) != 0 {
		t.Fatalf("validate of a good job: %+v", vr)
	}

	// The queue view is kept with the shape; a queue limit set since
	// changes the answer at once, and lifting it changes it back.
	if _, err := s.store.PutQueue(ctx, &api.Queue{Name: "small", Weight: 1, Namespaces: []string{"default"},
		Limit: &api.QueueLimits{CPU: 5, Memory: 4096}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.store.Queues()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the queue never showed in the store")
		}
	}
	vr = api.ValidateResponse{}
	post(t, base+"/v1/validate/job", secret, good, &vr)
	if vr.Valid || len(vr.Placement) != 1 || !strings.Contains(vr.Placement[0].Message, "more than the 5 that queue small") {
		t.Fatalf("validate of a job over its queue's limit: %+v", vr)
	}
	if _, err := s.store.DeleteQueue(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.store.Queues()) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the queue never left the store")
		}
	}
	vr = api.ValidateResponse{}
	post(t, base+"/v1/validate/job", secret, good, &vr)
	if !vr.Valid {
		t.Fatalf("validate after the queue was deleted: %+v", vr)
	}

	// The cluster's shape is kept between questions; a node that joins
	// changes the answer at once.
	big := schedtest.Node("n2")
	big.Resources.CPU = 128000
	if err := s.store.RegisterNode(ctx, big, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.store.Nodes()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second node never showed in the store")
		}
	}
	vr = api.ValidateResponse{}
	post(t, base+"/v1/validate/job", secret, huge, &vr)
	if !vr.Valid || vr.Nodes != 2 || len(vr.Placement) != 0 {
		t.Fatalf("validate after a big node joined: %+v", vr)
	}
}

// TestValidateRunsTheIsolationPolicy (issue 15): validate said a
// privileged job was valid while run and plan refused it. Now validate
// reports the refusal as an error at the offending key, and register
// refuses it with the same words, located.
func TestValidateRunsTheIsolationPolicy(t *testing.T) {
	s, base := aclServer(t)
	secret, _ := acl.NewSecret()
	if err := s.store.PutToken(context.Background(), &acl.Token{AccessorID: "m", Name: "m", SecretHash: acl.Hash(secret), Management: true}); err != nil {
		t.Fatal(err)
	}
	priv := "{\"name\":\"priv\",\"groups\":[{\"name\":\"g\",\"tasks\":[{\"name\":\"t\",\"driver\":\"docker\",\n" +
		"\"config\":{\"image\":\"gantry-demo:latest\",\"volumes\":[\"/srv:/srv\",\"/run:/host-run\"]},\"resources\":{\"cpu\":10,\"memory\":10},\n" +
		"\"security\":{\"privileged\":true}}]}]}"
	var vr api.ValidateResponse
	if code, body := post(t, base+"/v1/validate/job", secret, priv, &vr); code != http.StatusOK {
		t.Fatalf("validate: %d %s", code, body)
	}
	paths := map[string]int{}
	for _, e := range vr.Errors {
		paths[e.Path] = e.Line
		if !strings.Contains(e.Message, "refused by the cluster's isolation policy") {
			t.Errorf("error %q does not say why", e.Message)
		}
	}
	if vr.Valid || paths["groups[0].tasks[0].security.privileged"] != 3 || paths["groups[0].tasks[0].config.volumes[1]"] != 2 {
		t.Fatalf("validate of a privileged job mounting /run: %+v", vr)
	}
	code, body := post(t, base+"/v1/jobs", secret, priv, nil)
	var ae api.Error
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &ae) != nil || len(ae.Errors) != len(vr.Errors) ||
		ae.Errors[0].Message != vr.Errors[0].Message {
		t.Fatalf("register of the privileged job: %d %s", code, body)
	}
}
