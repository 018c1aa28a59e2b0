# abacus — one GNU Makefile.  `make` builds the release worker, `make test` runs
# everything under ASan+UBSan, `make run` starts the local stack.

CC       ?= cc
PKGS     := hiredis
WARNINGS := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow \
            -Wpointer-arith -Wformat=2
GEN      := build/gen
CPPFLAGS += -D_GNU_SOURCE -Ilib -I$(GEN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# nettle linked statically: only its SHA-256 is used, and the shared library
# would map ~300 KiB into every worker (docs/BENCHMARKS.md, RSS).
LDLIBS   += -lfcgi $(shell pkg-config --libs $(PKGS) 2>/dev/null) -Wl,-Bstatic -lnettle -Wl,-Bdynamic -lrt -pthread

RELEASE_CFLAGS := -O2 -g $(WARNINGS)
TEST_CFLAGS    := -O1 -g $(WARNINGS) -Werror -fsanitize=address,undefined \
                  -fno-sanitize-recover=all -fno-omit-frame-pointer
TEST_LDFLAGS   := -fsanitize=address,undefined

LIB_SRC  := $(wildcard lib/*.c)
UNITS    := $(patsubst tests/check_%.c,%,$(wildcard tests/check_*.c))

REL      := build/release
TST      := build/test
LUA      := lib/lua/get.lua lib/lua/add.lua lib/lua/set.lua lib/lua/ledger.lua lib/lua/list.lua \
            lib/lua/peek.lua lib/lua/registry.lua lib/lua/admit.lua

.PHONY: all test test-containers unit integration run deps test-deps lint clean bench bench-sweep bench-plot fuzz
.SECONDARY:
all: $(REL)/abacus.fcgi tools/abacus-load

# The load generator (libcurl's multi interface); docs/LOAD.md.
tools/abacus-load: tools/abacus-load.c
	@echo "  CC      $@"
	@$(CC) -D_GNU_SOURCE $(RELEASE_CFLAGS) $< -o $@ $(shell pkg-config --cflags --libs libcurl 2>/dev/null) -lm

# The bench ceilings: a trivial FastCGI worker (tests/bench/hello.c).
$(REL)/bench-hello: tests/bench/hello.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(RELEASE_CFLAGS) $< -o $@ $(LDLIBS)

# ---- the Redis scripts, embedded (lib/lua/README.md) ----------------------
$(GEN)/lua_scripts.h: $(LUA) $(wildcard lib/lua/limiter_*.lua lib/lua/ledger_*.lua) tools/lua2c
	@mkdir -p $(dir $@)
	@echo "  LUA2C   $@"
	@tools/lua2c $@ $(LUA)

# ---- release build -------------------------------------------------------
$(REL)/%.o: %.c | $(GEN)/lua_scripts.h
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(RELEASE_CFLAGS) -MMD -MP -c $< -o $@

$(REL)/abacus.fcgi: $(REL)/abacus.fcgi.o $(LIB_SRC:%.c=$(REL)/%.o)
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(LDLIBS)

# ---- release build with the metrics updates compiled out (cost measurement) ----
NOM := build/nometrics
$(NOM)/%.o: %.c | $(GEN)/lua_scripts.h
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) -DABACUS_NO_METRICS $(RELEASE_CFLAGS) -MMD -MP -c $< -o $@

$(NOM)/abacus.fcgi: $(NOM)/abacus.fcgi.o $(LIB_SRC:%.c=$(NOM)/%.o)
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(LDLIBS)

# ---- libFuzzer targets (clang); `make fuzz FUZZ_SECONDS=30` ----
FUZZ         := build/fuzz
FUZZ_TARGETS := body json idem config request
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(WARNINGS)

$(FUZZ)/lib/%.o: lib/%.c | $(GEN)/lua_scripts.h
	@mkdir -p $(dir $@)
	@echo "  CLANG   $@"
	@clang $(CPPFLAGS) -D_GNU_SOURCE $(FUZZ_CFLAGS:-fsanitize=fuzzer,%=-fsanitize=fuzzer-no-link,%) -c $< -o $@

$(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC:%.c=$(FUZZ)/%.o)
	@echo "  CLANG   $@"
	@clang $(CPPFLAGS) $(FUZZ_CFLAGS) $^ -o $@ $(LDLIBS)

fuzz: $(FUZZ_TARGETS:%=$(FUZZ)/fuzz_%)
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# ---- sanitizer build and unit tests --------------------------------------
$(TST)/%.o: %.c | $(GEN)/lua_scripts.h
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(shell pkg-config --cflags check 2>/dev/null) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(TST)/abacus.fcgi: $(TST)/abacus.fcgi.o $(LIB_SRC:%.c=$(TST)/%.o)
	@echo "  LD      $@"
	@$(CC) $(TEST_LDFLAGS) $^ -o $@ $(LDLIBS)

$(TST)/check_%: $(TST)/tests/check_%.o $(LIB_SRC:%.c=$(TST)/%.o)
	@echo "  LD      $@"
	@$(CC) $(TEST_LDFLAGS) $^ -o $@ $(LDLIBS) $(shell pkg-config --libs check 2>/dev/null)

deps:
	@tools/deps.sh

# The packages above plus the test-only tools (valgrind, clang, the OpenAPI linter).
test-deps:
	@tools/deps.sh test

unit: $(UNITS:%=$(TST)/check_%) $(TST)/abacus.fcgi
	@tests/run-unit.sh $(UNITS:%=$(TST)/check_%)

# A slow resolver for tests (LD_PRELOAD; tests/it_connection.sh).
$(TST)/slow_dns.so: tests/shim/slow_getaddrinfo.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) -shared -fPIC -O1 -g $(WARNINGS) -Werror $< -o $@ -ldl

integration: $(TST)/abacus.fcgi $(TST)/slow_dns.so tools/abacus-load
	@tests/run-integration.sh

# `make test` on a fresh machine: packages, sanitizer build, unit tests, then
# every integration suite against real servers; stops at the first failure.
test: test-deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

# docker/Dockerfile and docker-compose.yml built and run for real (podman here,
# or CONTAINER_ENGINE=docker); .ci/run calls it after `make test`.
test-containers: deps all
	@tools/deps.sh containers
	@tests/containers/run.sh

run: deps all
	@tools/abacus-stack run

# Throughput and latency against the ceilings measured in the same run; docs/BENCHMARKS.md.
bench: deps all $(REL)/bench-hello
	@tests/bench/run.sh

# Workers x connections, then the plot (docs/BENCHMARKS.md).
bench-sweep: deps all $(REL)/bench-hello
	@tests/bench/sweep.sh

bench-plot:
	@tests/bench/plot.sh

lint: $(GEN)/lua_scripts.h
	@echo "  LINT    cppcheck, clang-tidy, luacheck"
	@out=$$(luacheck -q --no-color --config .luacheckrc $(LUA:lib/lua/%=$(GEN)/%)) || { echo "$$out"; exit 1; }
	@cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem -Ilib -I$(GEN) abacus.fcgi.c lib tests
	@clang-tidy --quiet abacus.fcgi.c $(LIB_SRC) -- $(CPPFLAGS) -std=c11 2>/dev/null

clean:
	rm -rf build tools/abacus-load

-include $(shell find build -name '*.d' 2>/dev/null)
