# gccl: make demo runs tensor-parallel inference at TP=2; make test runs every test.
GO       ?= go
BIN      := bin
PKGS     := ./...
RACEPKGS := ./comm/... ./gloo/... ./shm/... ./launch/... ./flightrecorder/... ./internal/ranktest/... ./mesh/... ./xccl/... ./fsdp/... ./internal/peerconn/...

.PHONY: all build test test-race bench demo demo-collectives lint fuzz clean peers

all: build

build:
	$(GO) build -o $(BIN)/gccl ./cmd/gccl
	$(GO) build -o $(BIN)/demo ./examples/demo
	$(GO) build -o $(BIN)/tpinfer ./examples/tpinfer

# Greedy generation with a small Llama-style model, tensor-parallel over 2 ranks on shm.
demo: build
	$(BIN)/gccl run --nproc-per-node 2 --backend shm -- $(BIN)/tpinfer --hidden 256 --layers 4 --heads 8 --kv-heads 4 --vocab 1024 --prompt 1,2,3,4 --new-tokens 32

# The first demo: a 4-rank job that all-reduces, all-gathers and broadcasts and checks the results.
demo-collectives: build
	$(BIN)/gccl run --nproc-per-node 4 -- $(BIN)/demo

# The whole suite: unit tests, the conformance suite on gloo at world sizes 1-8, bad-input and
# peer-loss tests, then the race detector on the packages with concurrency.
test: lint
	$(GO) test -count=1 -timeout 20m $(PKGS)
	# comm's fault tests (mismatch, timeout, init failures) again, on the shm backend
	GCCL_BACKEND=shm $(GO) test -count=1 -run '^Test(BadInput|Timeout|Async|Init)' ./comm/
	# shm's single-copy paths (off by default) forced on for every all-reduce case, then for every
	# gather and broadcast case
	GCCL_SHM_SINGLE_COPY_ALLREDUCE_BYTES=1 GCCL_CONFORMANCE_RUN='^all_reduce' $(GO) test -count=1 -run TestConformance ./shm/
	GCCL_SHM_SINGLE_COPY_BYTES=1 GCCL_CONFORMANCE_RUN='^(all_gather|gather|broadcast)' $(GO) test -count=1 -run TestConformance ./shm/
	$(MAKE) test-race
	@left=$$(ls /dev/shm | grep -i gccl || true); \
	if [ -n "$$left" ]; then echo "left behind in /dev/shm: $$left"; exit 1; fi; echo "/dev/shm: nothing left behind"

test-race:
	$(GO) test -race -count=1 -timeout 20m -short $(RACEPKGS)

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 200ms ./tensor/ ./flightrecorder/
	$(BIN)/gccl bench --backend gloo --nproc 2 --op allreduce --dtype float32 --min-bytes 8 --max-bytes 64M --step-factor 8 --check
	$(BIN)/gccl bench --backend gloo --nproc 4 --op allreduce --dtype float32 --min-bytes 8 --max-bytes 64M --step-factor 8 --check

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReduceInto$$' -fuzztime 30s ./tensor/
	$(GO) test -run '^$$' -fuzz '^FuzzFloat16RoundTrip$$' -fuzztime 30s ./tensor/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadPickle$$' -fuzztime 30s -fuzzminimizetime 5s ./flightrecorder/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadJSON$$' -fuzztime 30s -fuzzminimizetime 5s ./flightrecorder/
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime 30s -fuzzminimizetime 5s ./tensor/safetensors/

peers:
	bash bench/peers/run.sh 2

clean:
	rm -rf $(BIN)

# The conformance suite against a real oneCCL on a CPU-only host (README, "The xccl backend"):
# source oneAPI's setvars.sh (or oneCCL's env/vars.sh) first, so that CCL_ROOT is set.
.PHONY: test-xccl-oneccl
test-xccl-oneccl:
	GCCL_XCCL_LIBRARY=$${GCCL_XCCL_LIBRARY:-$$CCL_ROOT/lib/libccl.so.2} \
	LD_LIBRARY_PATH=$$CCL_ROOT/lib:$$LD_LIBRARY_PATH \
	FI_PROVIDER_PATH=$${FI_PROVIDER_PATH:-$$CCL_ROOT/opt/mpi/libfabric/lib/prov} \
	CCL_PLUGIN=$${CCL_PLUGIN:-$$(find "$$CCL_ROOT" -name 'libccl_legacy_cpu.so*' | head -n1)} \
	CCL_WORKER_OFFLOAD=0 CCL_ATL_SHM=1 \
	$(GO) test -count=1 -v -run TestConformanceRealLibrary ./xccl/
