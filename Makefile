# kvchat — the commands a new user guesses. CMake does the building; this
# file runs scripts/setup first (Debian packages, the cached llama.cpp) and
# keeps one build directory per flavour.
#
#   make            build everything (build/)
#   make run        build, write the demo model if none is configured, start kvchat
#   make test       build and run every test; ends with "N passed, N failed"
#   make asan       the tests again under AddressSanitizer + UBSan (build-asan/)
#   make bench      benchmarks against llama-server built from the same source
#   make bench-cluster  routing over 1-4 engines, simulated, then over 1-3 real engines
#                       with the tiny model (about 2 min): prints the tables
#   make models     write the test, benchmark and demo models into build/models
#   make fuzz       the libFuzzer targets (clang), FUZZ_SECONDS each (build-fuzz/)
#   make stress     load and abuse test of a running kvchat (not part of make test)
#   make install    programs, man pages, systemd units, docs into PREFIX
#                   (/usr/local; DESTDIR for a staging root)
#   make clean      remove the build directories (the llama.cpp cache stays)

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
PREFIX     ?= /usr/local
CMAKE_GEN  ?= Ninja
SETUP      := scripts/setup

.PHONY: all build setup run test asan fuzz stress bench bench-cluster models install clean distclean

all: build

setup:
	@$(SETUP)

# Configure once (or when the cache prefix moved), then build incrementally.
define configure
	@prefix="$$($(SETUP) --print-prefix)" && \
	if [ ! -f $(1)/build.ninja ] || ! grep -qx "KVCHAT_LLAMA_PREFIX:PATH=$$prefix" $(1)/CMakeCache.txt; then \
	  cmake -S . -B $(1) -G $(CMAKE_GEN) -DKVCHAT_LLAMA_PREFIX="$$prefix" $(2) >/dev/null; \
	fi
endef

build:
	$(call configure,$(BUILD),)
	@cmake --build $(BUILD)

run: build
	@scripts/run $(BUILD)

test: build
	@scripts/test $(BUILD)

# The build configured for PREFIX (the units and man pages name its paths).
install: build
	@cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX="$(PREFIX)" >/dev/null
	@cmake --build $(BUILD)
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD)

asan:
	$(call configure,$(ASAN_BUILD),-DKVCHAT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
	@cmake --build $(ASAN_BUILD)
	@scripts/test $(ASAN_BUILD)

# Fuzz targets built by clang with ASan + UBSan, then each run in turn.
fuzz:
	$(call configure,$(FUZZ_BUILD),-DKVCHAT_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
	@cmake --build $(FUZZ_BUILD) --target fuzz_all
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz $(FUZZ_BUILD)

# Idle and slow connections, chats with hang-ups, parallel uploads and
# hostile log patterns against a real kvchat; prints what it measured.
stress: build
	@scripts/stress $(BUILD)

bench: build
	@scripts/bench $(BUILD)

bench-cluster: build
	@$(BUILD)/bin/kvchat-bench-cluster
	@$(BUILD)/bin/kvchat-bench-cluster --shared
	@[ -f $(BUILD)/models/tiny.gguf ] || scripts/mkmodels $(BUILD) tiny
	@$(BUILD)/bin/kvchat-bench-cluster --real --engine $(BUILD)/bin/kvchat-engine \
		--model $(BUILD)/models/tiny.gguf

models: build
	@scripts/mkmodels $(BUILD) all

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
