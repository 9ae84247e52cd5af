# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build demo test bench clean

deps:
	bash scripts/setup-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Trains MobileFaceNet on the built-in synthetic faces for a few minutes, evaluates held-out pairs
# before and after, and prints the summary.
demo: build
	$(BUILD)/bin/arcforge train --config configs/synth_mbf_demo.toml --out runs/demo

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 2400 -j $(JOBS)

bench: build
	cmake --build $(BUILD) --target loader_bench
	$(BUILD)/bench/loader_bench
	bash bench/run_train_bench.sh

clean:
	rm -rf $(BUILD)
