package state

import (
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Key layout under the store's prefix (default "/gantry/"):
//
//	jobs/<namespace>/<name>                   current job
//	jobversions/<namespace>/<name>/<version>  every version ever registered
//	allocs/<id>                               allocations (compact or JSON: encoding.go)
//	evals/<id>                                evaluations
//	nodes/<id>                                nodes
//	queues/<name>                             queues
//	policy/admission                          admission policy (policy.go)
//	policy/versions                           version policy (versions.go)
//	audit/<node id>                           latest audit report of a node (policy.go)
//	deployments/<id>                          deployments
//	nodeplan/<node id>                        bumped by every plan that places on the node
//	heartbeats/<node id>                      held by a lease while the node is alive
//	leader                                    election prefix
//	servers/<server id>                       a campaigning server's API URL, under its election lease
//	encodings/<server id>                     the allocation format a campaigning server reads, under that lease (encoding.go)
//	acltokens/<sha256 of secret>              ACL tokens (never the secret)
//	aclpolicies/<name>                        ACL policies
//	aclbootstrap                              present once ACLs were bootstrapped
//	defrag/...                                GPU defragmentation proposals and moves (defrag.go)
const (
	kindJob        = "jobs"
	kindJobVersion = "jobversions"
	kindAlloc      = "allocs"
	kindEval       = "evals"
	kindNode       = "nodes"
	kindQueue      = "queues"
	kindDeployment = "deployments"
	kindNodePlan   = "nodeplan"
	kindHeartbeat  = "heartbeats"
	kindLeader     = "leader"
	kindServer     = "servers"
	kindACLToken   = "acltokens"
	kindACLPolicy  = "aclpolicies"
	kindACLBoot    = "aclbootstrap"
)

type keys struct{ prefix string }

func (k keys) job(ns, name string) string { return k.prefix + kindJob + "/" + ns + "/" + name }
func (k keys) jobVersions(ns, name string) string {
	return k.prefix + kindJobVersion + "/" + ns + "/" + name + "/"
}
func (k keys) jobVersion(ns, name string, v uint64) string {
	return fmt.Sprintf("%s%020d", k.jobVersions(ns, name), v)
}
func (k keys) alloc(id string) string       { return k.prefix + kindAlloc + "/" + id }
func (k keys) eval(id string) string        { return k.prefix + kindEval + "/" + id }
func (k keys) node(id string) string        { return k.prefix + kindNode + "/" + id }
func (k keys) queue(name string) string     { return k.prefix + kindQueue + "/" + name }
func (k keys) nodePlan(id string) string    { return k.prefix + kindNodePlan + "/" + id }
func (k keys) heartbeat(id string) string   { return k.prefix + kindHeartbeat + "/" + id }
func (k keys) leader() string               { return k.prefix + kindLeader + "/" }
func (k keys) server(id string) string      { return k.prefix + kindServer + "/" + id }
func (k keys) aclToken(hash string) string  { return k.prefix + kindACLToken + "/" + hash }
func (k keys) aclPolicy(name string) string { return k.prefix + kindACLPolicy + "/" + name }
func (k keys) aclBootstrap() string         { return k.prefix + kindACLBoot }

// split returns the kind and the rest of a key, or "" for keys outside the
// prefix.
func (k keys) split(key string) (kind, rest string) {
	if !strings.HasPrefix(key, k.prefix) {
		return "", ""
	}
	kind, rest, _ = strings.Cut(key[len(k.prefix):], "/")
	return kind, rest
}

// topicOf maps a kind to its event topic; "" for kinds that make no events.
func topicOf(kind string) string {
	switch kind {
	case kindJob:
		return api.TopicJob
	case kindAlloc:
		return api.TopicAllocation
	case kindNode:
		return api.TopicNode
	case kindEval:
		return api.TopicEvaluation
	case kindQueue:
		return api.TopicQueue
	case kindAudit:
		return api.TopicAudit
	case kindDeployment:
		return api.TopicDeployment
	case kindVSphereEvent:
		return api.TopicVSphere
	case kindDefrag:
		return api.TopicDefrag
	}
	return ""
}
