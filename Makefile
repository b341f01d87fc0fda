# A thin wrapper over CMake presets (like neovim's): every target installs the
# missing Debian packages first, then configures, builds and runs.
JOBS ?= 2
CMAKE ?= cmake
CTEST ?= ctest

.PHONY: all deps build test asan asan-build tsan demo bench fuzz soak torture http-big install format lint clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@$(CMAKE) --preset default >/dev/null
	@$(CMAKE) --build --preset default -j $(JOBS)

test: build
	$(CTEST) --preset default

asan-build: deps
	@$(CMAKE) --preset asan >/dev/null
	@$(CMAKE) --build --preset asan -j $(JOBS)

asan: asan-build
	$(CTEST) --preset asan

# ThreadSanitizer over the thread tests (the pool, call_from_thread).
tsan: deps
	@$(CMAKE) --preset tsan >/dev/null
	@$(CMAKE) --build --preset tsan -j $(JOBS)
	$(CTEST) --preset tsan

demo: build
	@bash scripts/demo.sh build

bench: build
	@bash scripts/deps.sh bench
	@bash scripts/bench.sh build

soak: build
	@bash scripts/soak.sh build $(SOAK_SECONDS)

torture: build
	@/usr/bin/python3 scripts/torture.py build

fuzz: deps
	@$(CMAKE) --preset fuzz >/dev/null
	@$(CMAKE) --build --preset fuzz -j $(JOBS)
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

# The static-file streaming test with a 1 GiB file instead of 64 MiB
# (bounded output buffering; the file lives in /tmp for the run).
http-big: build
	CT_HTTP_BIG_FILE_MIB=1024 ./build/test/test_http_static \
	  --filter 'http_static/large_file*' --timeout=600

install: build
	$(CMAKE) --install build $(if $(PREFIX),--prefix $(PREFIX))

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

lint: build
	@git ls-files 'reactor/*.c' 'deferred/*.c' 'transports/*.c' 'protocols/*.c' 'apps/*.c' | \
	  xargs clang-tidy -p build --quiet

clean:
	rm -rf build build-asan build-tsan build-fuzz
