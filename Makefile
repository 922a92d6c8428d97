# vramward: the host and the shipped plugins (this module), the SDK (sdk/,
# a module of its own) and the example sink (examples/sink-jsonl, a module of
# its own, as a third party's would be); go.work ties them together here.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/*))
PROTOS    := $(shell cd sdk/proto && find . -name '*.proto' -printf '%P\n' | sort)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/vramward/vramward/sdk/version.Version=$(VERSION)
# go-nvml's cgo headers carry deprecation warnings that say nothing about our code.
export CGO_CFLAGS ?= -Wno-deprecated-declarations
# runtime/secret erases what signing with an epoch key leaves in registers,
# stacks and signal stacks (host/trail/secret.go).
export GOEXPERIMENT ?= runtimesecret
TEST_FLAGS ?= -race -count=1 -timeout 20m
# Every module's packages: ./... stops at a nested module's go.mod.
PKGS      := ./... ./sdk/... ./examples/sink-jsonl/...
FUZZTIME  ?= 60s

.PHONY: all build run test bench bench-gpu fuzz lint proto clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vramward ./host/cmd/vramward
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/vramward-plugin-$$p ./plugins/$$p" && \
		$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vramward-plugin-$$p ./plugins/$$p || exit 1; \
	done

# Runs the daemon on the example config until Ctrl-C, then verifies the trail it wrote.
run: build
	./examples/run.sh

test:
	$(GO) vet $(PKGS)
	$(GO) test $(TEST_FLAGS) $(PKGS)
	@# The deployment manifests' tests are modules of their own (the host does not pull in their API types).
	cd deploy/tests/kubernetes && GOWORK=off $(GO) test -count=1 ./...
	cd deploy/tests/nomad && GOWORK=off $(GO) test -count=1 ./...
	@# What the GGUF reader was compared with ggml on (the line that test logs).
	@$(GO) test -count=1 -run '^TestAgreesWithGGML$$' -v ./plugins/loader-gguf/internal/gguf | grep -E 'files:|SKIP|^(ok|FAIL)'

# Go benchmarks, then the drivers that run the built binaries and print
# ratios against baselines measured in the same run.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 1 ./sdk/... ./plugins/...
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 ./host/...
	$(GO) run ./bench/audit
	$(GO) run ./bench/host
	$(GO) run ./bench/fleet
	$(GO) run ./bench/loader
	$(GO) run ./bench/lanewake
	$(GO) run ./bench/vram -backend emulated -sizes-gib 1

# Builds what a GPU node without Go needs into bin/gpu/: the plugin, its
# tamper-hook test build, its package tests as a binary, and the benchmark
# driver. There, from the plugin's directory (the tests read testdata/):
#   VRAMWARD_TEST_CUDA=1 VRAMWARD_VRAM_PLUGIN=<abs>/bin/gpu/vramward-plugin-vram-cuda \
#   VRAMWARD_VRAM_PLUGIN_TAMPER=<abs>/bin/gpu/vramward-plugin-vram-cuda-tamper <abs>/bin/gpu/vram-cuda.test -test.v
#   bin/gpu/bench-vram -plugin bin/gpu/vramward-plugin-vram-cuda -backend cuda -sizes-gib 1,8
bench-gpu:
	@mkdir -p $(BIN)/gpu
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/gpu/vramward-plugin-vram-cuda ./plugins/vram-cuda
	$(GO) build -tags vramward_tamper -o $(BIN)/gpu/vramward-plugin-vram-cuda-tamper ./plugins/vram-cuda
	$(GO) test -c -o $(BIN)/gpu/vram-cuda.test ./plugins/vram-cuda
	$(GO) build -o $(BIN)/gpu/bench-vram ./bench/vram

# Each fuzz target runs for FUZZTIME; the corpus lives in each package's testdata/fuzz/.
fuzz:
	@./bench/fuzz.sh $(FUZZTIME)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }
	$(GO) vet $(PKGS)

# Regenerates sdk/proto from the .proto files with protoc (Debian's
# protobuf-compiler) and the generator versions pinned as tools in go.mod.
proto:
	@mkdir -p $(BIN)/tools
	$(GO) build -o $(BIN)/tools/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	cd sdk/proto && protoc -I . \
		--plugin=protoc-gen-go=../../$(BIN)/tools/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=../../$(BIN)/tools/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTOS)

clean:
	rm -rf $(BIN)
