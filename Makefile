# sluice - high-throughput outbound MTA. `make` builds ./sluice;
# `make check` runs every test CI runs (and a short fuzz run); `make demo` shows it working.
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE_CFLAGS := -std=gnu11 -DSLUICE_DATADIR='"$(PREFIX)/share/sluice"' $(WARN) -pthread -MMD -MP
# dkim/exports.list: libopendkim's key parse reaches dkim/keys.c (see there).
LIBS := -luring -llmdb -lconfig -lldns -lopendkim -lwolfssl -lcrypto -lm -pthread -Wl,--dynamic-list=dkim/exports.list
JEMALLOC := -ljemalloc

# Layers, each using only those before it (tests/check_layers.py checks):
# engine/lib (the ground floor) < dns, dkim < shards < engine; bench uses
# the ground floor, and only engine/main.c knows bench exists.
LIB_LAYER := engine/lib/util.c engine/lib/json.c engine/lib/alloc.c engine/lib/strmap.c \
        engine/lib/ring.c engine/lib/message.c engine/lib/envelope.c engine/lib/retry_state.c engine/lib/spool_writer.c \
        engine/lib/job_file.c engine/lib/tls.c engine/lib/tags.c
SRCS := $(LIB_LAYER) \
        dns/packet.c dns/resolver.c dns/psl.c dns/sync.c dns/spf.c dns/dmarc.c dns/mx.c dns/resolve_cmd.c \
        dkim/keys.c dkim/signer.c dkim/track.c dkim/dkim_cmd.c \
        shards/config_types.c shards/timer_wheel.c shards/smtp_reply.c shards/smtp_output.c \
        shards/shard.c shards/dest_queue.c shards/throttle.c shards/pair_stats.c shards/adapt.c shards/reply_rules.c shards/smtp_client.c \
        engine/main.c engine/acct_log.c engine/feeder.c engine/dsn.c \
        engine/config.c engine/providers_embed.c engine/spool.c engine/run.c engine/adaptation.c engine/inject.c \
        engine/claims.c engine/reaper.c engine/job_run.c \
        engine/control_cmd.c \
        engine/doctor_report.c engine/doctor.c engine/doctor_message.c engine/doctor_cmd.c engine/notify.c \
        engine/metrics.c engine/metrics_server.c \
        engine/side_server.c engine/control.c engine/status.c engine/bounce_class.c engine/header_templates.c engine/tallies.c engine/bounce_suppress.c \
        engine/suppress.c engine/suppress_cmd.c \
        engine/feedback_parse.c engine/feedback_judge.c engine/feedback_ingest.c engine/feedback_watch.c engine/feedback_cmd.c \
        bench/mockmx.c bench/spoolgen.c bench/spool_ops.c bench/bench_cmd.c

# Debian packages the build, the tests, the demo and the benchmark need.
DEB_PKGS := build-essential pkg-config liburing-dev libwolfssl-dev libldns-dev \
            libopendkim-dev libssl-dev libjemalloc-dev libcmocka-dev libconfig-dev liblmdb-dev lmdb-utils \
            postfix python3 python3-dkim python3-aiosmtpd jq gnuplot-nox openssl strace iproute2 \
            opendkim-tools dnsmasq-base nsd ldnsutils publicsuffix python3-spf clang libclang-rt-dev \
            systemd groff-base man-db prometheus tmux
# What must exist for each of them (checked before installing anything).
DEP_PROBE := /usr/include/liburing.h /usr/include/lmdb.h /usr/bin/mdb_load /usr/include/openssl/evp.h /usr/include/opendkim/dkim.h /usr/include/libconfig.h /usr/include/jemalloc/jemalloc.h \
             /usr/include/cmocka.h /usr/sbin/smtp-sink /usr/bin/jq /usr/bin/gnuplot /usr/bin/openssl /usr/bin/strace /usr/bin/ss \
             /usr/lib/python3/dist-packages/aiosmtpd /usr/sbin/opendkim-testmsg /usr/sbin/dnsmasq /usr/sbin/nsd /usr/bin/drill \
             /usr/share/publicsuffix/public_suffix_list.dat /usr/lib/python3/dist-packages/spf.py \
             /usr/bin/systemd-analyze /usr/bin/groff /usr/bin/man /usr/bin/promtool /usr/bin/tmux \
             /usr/bin/clang /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a

BUILD := build/release
ASAN_BUILD := build/asan
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
ASAN_OBJS := $(SRCS:%.c=$(ASAN_BUILD)/%.o)
LIB_SRCS := $(filter-out engine/main.c,$(SRCS))

UNIT_TESTS := test_smtp_reply test_envelope test_smtp_output test_json test_timer_wheel test_dns_packet \
              test_job_file test_tls test_config_limits test_reply_rules test_doctor_records test_bounce_class \
              test_suppress test_feedback_parse

.PHONY: all deps layers check check-asan unit integration bench bench-quick demo install clean

all: sluice

sluice: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $(OBJS) $(LIBS) $(JEMALLOC)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<

$(ASAN_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	      -DSLUICE_NO_JEMALLOC -c -o $@ $<

build/sluice-asan: $(ASAN_OBJS)
	$(CC) -fsanitize=address,undefined -o $@ $(ASAN_OBJS) $(LIBS)

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# The shipped providers file is built into the binary (.incbin, which the
# compiler's dependency files do not see).
PROVIDERS := share/sluice/providers.conf share/sluice/responses.conf share/sluice/bounce-classes.conf
$(BUILD)/engine/providers_embed.o $(ASAN_BUILD)/engine/providers_embed.o: $(PROVIDERS)

# deps: install the Debian packages when root, else print the command.
deps:
	@missing=""; for f in $(DEP_PROBE); do [ -e $$f ] || missing=yes; done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS); \
	else \
	  echo "deps: run as root: apt-get install -y $(DEB_PKGS)"; exit 1; \
	fi

# ---- tests ----
UNIT_BINS := $(UNIT_TESTS:%=build/tests/%)
ASAN_UNIT_BINS := $(UNIT_TESTS:%=build/tests-asan/%)

build/tests/%: tests/unit/%.c $(filter-out $(BUILD)/engine/main.o,$(OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(filter-out $(BUILD)/engine/main.o,$(OBJS)) \
	      -lcmocka $(LIBS) $(JEMALLOC)

build/tests-asan/%: tests/unit/%.c $(filter-out $(ASAN_BUILD)/engine/main.o,$(ASAN_OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 -g -fsanitize=address,undefined -o $@ $< \
	      $(filter-out $(ASAN_BUILD)/engine/main.o,$(ASAN_OBJS)) -lcmocka $(LIBS)

layers:
	@python3 tests/check_layers.py

unit: deps sluice $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

integration: deps sluice
	@SLUICE=$(CURDIR)/sluice tests/run-integration.sh

check: deps
	@python3 tests/check_layers.py
	@python3 tests/check_reply_rules.py
	@$(MAKE) --no-print-directory sluice $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)
	@SLUICE=$(CURDIR)/sluice tests/run-integration.sh
	@$(MAKE) --no-print-directory fuzz-check fuzz-repro

check-asan: deps
	@$(MAKE) --no-print-directory build/sluice-asan $(ASAN_UNIT_BINS)
	@tests/run-unit.sh $(ASAN_UNIT_BINS)
	@SLUICE=$(CURDIR)/build/sluice-asan SLUICE_ASAN=1 tests/run-integration.sh

# ---- benchmark and demo ----
bench: deps sluice
	@./sluice bench

bench-quick: deps sluice
	@./sluice bench --quick

demo: deps sluice
	@bench/demo.sh

# install: PREFIX (/usr/local) for the program, its data and man pages;
# SYSCONFDIR (/etc) for the configuration and the logrotate snippet (both
# never overwritten; the configuration world-readable: it names key files,
# the keys themselves are the operator's to protect); the systemd unit, sysusers and tmpfiles entries under
# PREFIX/lib (systemd reads /usr/local/lib too). DESTDIR stages it all.
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
BIN ?= sluice
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/sluice $(DESTDIR)$(PREFIX)/share/sluice \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d \
	  $(DESTDIR)$(SYSCONFDIR)/sluice $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sluice
	install -m 0755 bench/bench.py $(DESTDIR)$(PREFIX)/share/sluice/bench.py
	install -m 0644 $(PROVIDERS) $(DESTDIR)$(PREFIX)/share/sluice/
	install -m 0644 sluice.conf README.md $(DESTDIR)$(PREFIX)/share/doc/sluice/
	install -m 0644 share/man/sluice.8 $(DESTDIR)$(PREFIX)/share/man/man8/sluice.8
	install -m 0644 share/man/sluice.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/sluice.conf.5
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' share/systemd/sluice.service.in \
	  >$(DESTDIR)$(UNITDIR)/sluice.service && chmod 0644 $(DESTDIR)$(UNITDIR)/sluice.service
	install -m 0644 share/systemd/sluice.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/sluice.conf
	install -m 0644 share/systemd/sluice.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/sluice.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/logrotate.d/sluice ] || \
	  install -m 0644 share/logrotate/sluice $(DESTDIR)$(SYSCONFDIR)/logrotate.d/sluice
	[ -e $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.conf ] || \
	  install -m 0644 sluice.conf $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.conf

clean:
	rm -rf build sluice

# ---- probes: small separate programs, not linked into ./sluice ----
# send-zc-probe: zero-copy vs copying sendmsg over loopback (see the file).
.PHONY: send-zc-probe
SEND_ZC_PROBE_SRCS := bench/send_zc_probe.c engine/lib/ring.c engine/lib/util.c
send-zc-probe: build/send-zc-probe
build/send-zc-probe: $(SEND_ZC_PROBE_SRCS:%.c=$(BUILD)/%.o)
	$(CC) $(CFLAGS) -o $@ $^ -luring -pthread
-include $(SEND_ZC_PROBE_SRCS:%.c=$(BUILD)/%.d)

# ---- fuzzing: libFuzzer targets (clang), see tests/fuzz/ ----
# `make fuzz` runs each for FUZZ_SECONDS; `make check` runs each for
# FUZZ_CHECK_SECONDS from the generated seeds and fails on any crash.
FUZZ_SECONDS ?= 120
FUZZ_CHECK_SECONDS ?= 20
FUZZ_CC ?= clang
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer -DSLUICE_NO_JEMALLOC
# Product bugs the fuzzers found are kept in tests/fuzz/crashes/; while one
# is open its flag here makes the harnesses tolerate it (so runs look for
# new trouble). `make fuzz-repro` (part of `make check`) runs the
# reproducers against harnesses built without these flags.
FUZZ_KNOWN ?=
FUZZ_TARGETS := fuzz_smtp_reply fuzz_envelope fuzz_job_file fuzz_smtp_client fuzz_spf fuzz_feedback
FUZZ_SRC_fuzz_dns_packet := dns/packet.c engine/lib/util.c
FUZZ_SRC_fuzz_smtp_reply := shards/smtp_reply.c
FUZZ_SRC_fuzz_envelope := engine/lib/envelope.c engine/lib/message.c engine/lib/util.c
FUZZ_SRC_fuzz_job_file := engine/lib/job_file.c engine/lib/envelope.c engine/lib/message.c engine/lib/util.c
FUZZ_SRC_fuzz_smtp_client := tests/fuzz/fake_ring.c shards/smtp_client.c shards/dest_queue.c shards/smtp_reply.c \
                             shards/smtp_output.c shards/timer_wheel.c engine/lib/util.c \
                             shards/config_types.c engine/lib/tls.c engine/lib/strmap.c engine/lib/envelope.c
FUZZ_SRC_fuzz_spf := dns/spf.c dns/dmarc.c dns/psl.c dns/packet.c engine/lib/tags.c engine/lib/util.c engine/lib/strmap.c
FUZZ_SRC_fuzz_feedback := engine/feedback_parse.c engine/lib/util.c
FUZZ_LIBS_fuzz_dns_packet := -lldns
FUZZ_LIBS_fuzz_spf := -lldns
FUZZ_LIBS_fuzz_smtp_client := -lwolfssl
FUZZ_MAXLEN_fuzz_dns_packet := 4096
FUZZ_MAXLEN_fuzz_smtp_reply := 8192
FUZZ_MAXLEN_fuzz_envelope := 8192
FUZZ_MAXLEN_fuzz_job_file := 8192
FUZZ_MAXLEN_fuzz_smtp_client := 4096
FUZZ_MAXLEN_fuzz_spf := 4096
FUZZ_MAXLEN_fuzz_feedback := 16384
FUZZ_OPTS = -max_len=$(FUZZ_MAXLEN_$(1)) -timeout=10 -rss_limit_mb=4096 \
            $(if $(wildcard tests/fuzz/$(1).dict),-dict=tests/fuzz/$(1).dict)

.PHONY: fuzz fuzz-check fuzz-build fuzz-repro
.SECONDEXPANSION:
build/fuzz/%: tests/fuzz/%.c Makefile $$(FUZZ_SRC_$$*) $$(wildcard tests/fuzz/*.h) $$(wildcard shards/*.h engine/*.h engine/lib/*.h dns/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_KNOWN) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*)

build/fuzz-strict/%: tests/fuzz/%.c Makefile $$(FUZZ_SRC_$$*) $$(wildcard tests/fuzz/*.h) $$(wildcard shards/*.h engine/*.h engine/lib/*.h dns/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*)

build/fuzz/seeds/.stamp: tests/fuzz/seeds.py tests/fuzz/seeds_mta.py $(wildcard tests/fixtures/feedback/*)
	@rm -rf build/fuzz/seeds
	@python3 tests/fuzz/seeds.py build/fuzz/seeds/fuzz_dns_packet
	@python3 tests/fuzz/seeds_mta.py build/fuzz/seeds
	@mv build/fuzz/seeds/reply build/fuzz/seeds/fuzz_smtp_reply
	@mv build/fuzz/seeds/envelope build/fuzz/seeds/fuzz_envelope
	@mv build/fuzz/seeds/job build/fuzz/seeds/fuzz_job_file
	@mv build/fuzz/seeds/client build/fuzz/seeds/fuzz_smtp_client
	@mv build/fuzz/seeds/spf build/fuzz/seeds/fuzz_spf
	@mkdir -p build/fuzz/seeds/fuzz_feedback && cp tests/fixtures/feedback/*.eml build/fuzz/seeds/fuzz_feedback/
	@touch $@

fuzz-build: $(addprefix build/fuzz/,fuzz_dns_packet $(FUZZ_TARGETS)) build/fuzz/seeds/.stamp

# Every target for FUZZ_SECONDS (not in CI); the corpora grow in build/fuzz/work/.
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@fail=0; $(foreach t,fuzz_dns_packet $(FUZZ_TARGETS),\
	  tests/fuzz/run.sh $(FUZZ_SECONDS) build/fuzz/$(t) build/fuzz/seeds/$(t) $(call FUZZ_OPTS,$(t)) || fail=1;) \
	exit $$fail

# The short run `make check` does: fresh corpora from the seeds.
fuzz-check: deps
	@$(MAKE) --no-print-directory fuzz-build
	@rm -rf $(addprefix build/fuzz/work/,$(FUZZ_TARGETS))
	@fail=0; $(foreach t,$(FUZZ_TARGETS),\
	  tests/fuzz/run.sh $(FUZZ_CHECK_SECONDS) build/fuzz/$(t) build/fuzz/seeds/$(t) $(call FUZZ_OPTS,$(t)) || fail=1;) \
	exit $$fail

# The reproducers in tests/fuzz/crashes/ (NAME: TARGET-WITHOUT-fuzz_-PREFIX_*).
fuzz-repro: deps $(addprefix build/fuzz-strict/,$(FUZZ_TARGETS))
	@fail=0; for f in tests/fuzz/crashes/*; do \
	  t=""; for c in $(FUZZ_TARGETS); do case "$$(basename $$f)" in $${c#fuzz_}_*) t=$$c;; esac; done; \
	  [ -n "$$t" ] || { echo "fuzz-repro: $$f: no target for it"; fail=1; continue; }; \
	  if build/fuzz-strict/$$t $$f >build/fuzz-strict/$$(basename $$f).log 2>&1; then echo "fuzz-repro: $$f: passes (fixed)"; \
	  else echo "fuzz-repro: $$f: still fails ($$t; log build/fuzz-strict/$$(basename $$f).log)"; fail=1; fi; \
	done; exit $$fail
