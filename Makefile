# The two commands a new user needs:
#   make demo   - single-node cluster in the background, demo service healthy
#   make test   - every test (unit, property, fuzz seeds, end-to-end on Docker);
#                 fails at once, naming it, when a tool the tests need is missing

GO ?= go
# The NVML bindings (go-nvml, third-party cgo) call functions NVIDIA marks
# deprecated: about 150 lines of C warnings on a first build. Gantry has
# no cgo code of its own (a test keeps it so), so this silences only them.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: build demo demo-stop demo-image test test-available vet fuzz bench

build:
	@echo "==> building bin/gantry (the first build compiles every dependency: minutes; later ones: seconds)"
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

# Every test. What the tests drive (Docker, Chromium, Prometheus, spin,
# docker-compose, QEMU, clang for wasm32-wasi, the trace) is checked first: a missing one fails at once,
# named, with how to install it (.ci/run installs them); then the tests run
# with GANTRY_REQUIRE_*, so none can skip for lack of a tool. The last
# lines count passed, failed and skipped tests and name every skip.
test: vet
	scripts/test-prereqs.sh
	GANTRY_REQUIRE_DOCKER=1 GANTRY_REQUIRE_UI_DEPS=1 GANTRY_SIM_REQUIRE_TRACE=1 GANTRY_REQUIRE_SPIN=1 \
		GANTRY_REQUIRE_QEMU=1 GANTRY_REQUIRE_WASI_CLANG=1 GANTRY_REQUIRE_NETNS=1 \
		$(GO) test -json -count=1 -timeout 60m ./... | $(GO) run ./scripts/testsummary

# The tests that can run on this machine; those lacking a tool skip, and
# the summary names each skip.
test-available: vet
	$(GO) test -json -count=1 -timeout 60m ./... | $(GO) run ./scripts/testsummary

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./internal/jobspec/
	$(GO) test -run='^$$' -fuzz=FuzzValidate -fuzztime=60s ./internal/scheduler/
	$(GO) test -run='^$$' -fuzz=FuzzConfig -fuzztime=60s ./internal/driver/qemu/
	$(GO) test -run='^$$' -fuzz=FuzzCountFrames -fuzztime=60s ./internal/driver/exec/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=60s ./internal/bench/report/

# Benchmarks are commands, not tests; see the README's table.
bench: build
	scripts/build-demo-image.sh >/dev/null
	bin/gantry bench run
