# The two commands a new user needs:
#   make demo   - single-node cluster in the background, demo service healthy
#   make test   - every test (unit, property, fuzz seeds, end-to-end on Docker)

GO ?= go

.PHONY: build demo demo-stop demo-image test vet fuzz bench

build:
	$(GO) build -o bin/gantry ./cmd/gantry

demo:
	scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

demo-image:
	scripts/build-demo-image.sh

vet:
	test -z "$$(gofmt -l cmd internal e2e examples)" || (gofmt -l cmd internal e2e examples; exit 1)
	$(GO) vet ./...

# Tests that need the Docker engine fail (not skip) when it is missing.
test: vet
	GANTRY_REQUIRE_DOCKER=1 $(GO) test -count=1 -timeout 60m ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./internal/jobspec/
	$(GO) test -run='^$$' -fuzz=FuzzValidate -fuzztime=60s ./internal/scheduler/
	$(GO) test -run='^$$' -fuzz=FuzzConfig -fuzztime=60s ./internal/driver/qemu/

# Benchmarks are commands, not tests; see the README's table.
bench:
	$(GO) test -run '^$$' -bench BenchmarkPlace -benchtime 1x -count 5 -cpu 1 ./internal/scheduler/
	$(GO) test -run '^$$' -bench Startup -benchtime 1x ./e2e/
	bench/proxy.sh
