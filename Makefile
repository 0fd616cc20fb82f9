# imgsearchd: `make run` starts the daemon, `make test` runs the whole test suite.
# Both create .venv and install what is needed when it is missing: `run` the daemon and its
# runtime dependencies only, `test` (and lint, bench) the test tools on top.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
ARGS   ?=
# pytest-xdist workers for `make test`: 2 measured 1.67x faster than one process on 2 cores
# (444 -> 266 s; BENCHMARKS.md, "Test suite"); WORKERS=0 runs in one process.
WORKERS ?= 2
# setuptools prints a notice on every editable install of a package mapped from another folder
# ("be careful with folders in your working directory with the same name as your package"): this
# checkout has none (the package is daemon/, installed as imgsearchd), so that one notice is not shown.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e
XDIST  := $(if $(filter 0,$(WORKERS)),-p no:xdist,-n $(WORKERS) --dist loadfile)
# torch and torchvision for every venv made here. TORCH_INDEX picks where from: e.g.
# https://download.pytorch.org/whl/cpu, a CPU-only build about 4 GB smaller than the CUDA one
# (docs/operations.md, "A CPU-only torch"); empty: pip's own configuration.
TORCH       ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
TORCH_FROM  := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: run test test-quick lint bench install install-test install-service uninstall-service install-user-service uninstall-user-service clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision pinned: these builds install from this machine's disk.
	$(PY) -m pip install --quiet $(TORCH_FROM) $(TORCH)
	$(EDITABLE) .
	@touch $(STAMP)

# The test tools (pytest, Ray, mypy, selenium, ...: about 0.9 GB), for make test, lint and bench only.
$(TEST_STAMP): $(STAMP)
	$(EDITABLE) '.[test]'
	@touch $(TEST_STAMP)

install: $(STAMP)

# TypeScript's checker, for the page's JavaScript modules (// @ts-check, JSDoc types) in lint:
# pinned by package.json and package-lock.json, installed with the machine's npm into
# build/jscheck: one 4.4 MB package (15 MB fetched with the registry's metadata, about 1.3 s
# with an empty npm cache), then lint needs no network. The page itself has no build step.
JSCHECK := build/jscheck/node_modules/.bin/tsc
$(JSCHECK): package.json package-lock.json
	@mkdir -p build/jscheck && cp package.json package-lock.json build/jscheck/
	cd build/jscheck && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

install-test: $(TEST_STAMP) $(JSCHECK)

run: $(STAMP)
	$(VENV)/bin/imgsearchd serve $(ARGS)

# OpenMP threads that wait passively: two workers and the daemons they start share the cores, and
# spinning threads burn the other's time (whole suite, 2 workers: 7.1 -> 6.6 min of CPU, 309 -> 294 s;
# BENCHMARKS.md, "Test suite").
test test-quick: export OMP_WAIT_POLICY ?= PASSIVE

# Everything, the slow tiers included (browser, cluster, packaging, load, fault, process, bench): what CI runs.
test: $(TEST_STAMP)
	$(PY) -m pytest $(XDIST) $(ARGS)

# While working: everything but the slow tiers, under 2 minutes on 2 cores.
test-quick: $(TEST_STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow" $(ARGS)

# Style (ruff format + lint) and types (mypy) over the code, the tests and the benchmarks.
# mypy sees daemon/ as the package it is installed as, through a link under build/.
# Tests reach into Optional attributes the code under test has just set (service.catalog
# after load, catalog.get of a file just added), and compare Optional fields of answers it has
# just filled (stats["p50_ms"] <= budget, "..." in stats["recall_note"]): a None there fails
# the test at once, so union-attr and operator would only add asserts there. Everything else
# is checked as in the daemon.
lint: $(TEST_STAMP) $(JSCHECK)
	$(VENV)/bin/ruff format --check daemon tests bench
	$(VENV)/bin/ruff check daemon tests bench
	# The page's modules, typed by JSDoc, checked strictly (tsconfig.json; about 2.5 s)
	$(JSCHECK) -p tsconfig.json
	@mkdir -p build/mypy && ln -sfn ../../daemon build/mypy/imgsearchd
	$(VENV)/bin/mypy build/mypy/imgsearchd
	$(VENV)/bin/mypy --disable-error-code union-attr --disable-error-code operator tests bench
	# The shape (tests/test_architecture.py, about 4 s): rooms import only the rooms below them, no
	# import cycle, no module over 500 lines, no function over 80, few untyped dicts.
	$(PY) -m pytest -q -p no:xdist -p no:cacheprovider -m "not slow" tests/test_architecture.py

bench: $(TEST_STAMP)
	$(PY) bench/bench_indexing.py $(ARGS)

# The services run from a venv of their own, not from this checkout: a plain (not editable)
# install of it, `pip install .`, with torch as TORCH and TORCH_INDEX say, so moving or deleting
# the clone leaves them running. Run the target again to upgrade. A venv cannot be moved once
# made (its scripts name its path), so DESTDIR stages the unit and the config, never the venv.
# SERVICE_PIP_ARGS: more arguments for `pip install .` (the tests install offline).
# umask 022: the system unit's dynamic user must read the venv root made (root's umask may be 077).
SERVICE_PIP_ARGS ?=
define service_venv
	@umask 022; test -x $(1)/bin/python || $(PYTHON) -m venv $(1) || python3 -m venv $(1)
	umask 022; $(1)/bin/python -m pip install --quiet $(TORCH_FROM) $(TORCH)
	@# setuptools builds in build/lib and never deletes there what the checkout no longer has: a fresh one
	rm -rf build/lib build/bdist.*
	umask 022; $(1)/bin/python -m pip install --quiet $(SERVICE_PIP_ARGS) .
endef
# Removes a venv made by service_venv (one with a pyvenv.cfg: never a folder that is not a venv).
define remove_venv
	@if [ -f $(1)/pyvenv.cfg ]; then rm -rf $(1) && echo "removed $(1)"; fi
endef

# systemd: the venv in /opt/imgsearchd/venv, the unit with ExecStart pointing there, and a
# default config (data in /var/lib/imgsearchd) unless one is there. DESTDIR stages the unit and
# the config into a folder instead.
DESTDIR  ?=
UNIT_DIR ?= /etc/systemd/system
CONF_DIR ?= /etc/imgsearchd
SERVICE_VENV ?= /opt/imgsearchd/venv

install-service:
	$(call service_venv,$(SERVICE_VENV))
	install -d $(DESTDIR)$(UNIT_DIR) $(DESTDIR)$(CONF_DIR)
	sed 's#^ExecStart=/opt/imgsearchd/venv/bin/imgsearchd#ExecStart=$(abspath $(SERVICE_VENV))/bin/imgsearchd#' \
		imgsearchd.service > $(DESTDIR)$(UNIT_DIR)/imgsearchd.service
	@if [ -e $(DESTDIR)$(CONF_DIR)/imgsearchd.toml ]; then \
		echo "keeping the existing $(DESTDIR)$(CONF_DIR)/imgsearchd.toml"; \
	else \
		sed 's#^data_dir = "data"#data_dir = "/var/lib/imgsearchd"#' config/imgsearchd.toml \
			> $(DESTDIR)$(CONF_DIR)/imgsearchd.toml; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi
	@echo "installed; now: systemctl enable --now imgsearchd"

uninstall-service:
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl disable --now imgsearchd || true; fi
	rm -f $(DESTDIR)$(UNIT_DIR)/imgsearchd.service
	$(call remove_venv,$(SERVICE_VENV))
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi
	@echo "removed the unit and its venv; left $(CONF_DIR)/imgsearchd.toml and /var/lib/imgsearchd (delete them by hand)"

# The user unit (systemctl --user), for a desktop: it runs as you and reads ~/Pictures.
# Config in $XDG_CONFIG_HOME/imgsearchd (~/.config), data in ~/.local/share/imgsearchd, both kept
# when present; the venv in ~/.local/share/imgsearchd/venv. DESTDIR stages the unit and the
# config into a folder; no `sudo`. The new config gets a random token and mode 0600: the daemon
# reads your private pictures and serves them on loopback, which every other user of the machine can reach.
USER_CONFIG    := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)
USER_UNIT_DIR  ?= $(USER_CONFIG)/systemd/user
USER_CONF_DIR  ?= $(USER_CONFIG)/imgsearchd
USER_VENV      ?= $(HOME)/.local/share/imgsearchd/venv

install-user-service:
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		echo "install-user-service installs for the user running it: run it as that user, without sudo" >&2; exit 1; fi
	$(call service_venv,$(USER_VENV))
	install -d $(DESTDIR)$(USER_UNIT_DIR) $(DESTDIR)$(USER_CONF_DIR)
	sed 's#^ExecStart=%h/.local/share/imgsearchd/venv/bin/imgsearchd#ExecStart=$(abspath $(USER_VENV))/bin/imgsearchd#' \
		imgsearchd.user.service > $(DESTDIR)$(USER_UNIT_DIR)/imgsearchd.service
	@if [ -e $(DESTDIR)$(USER_CONF_DIR)/imgsearchd.toml ]; then \
		echo "keeping the existing $(DESTDIR)$(USER_CONF_DIR)/imgsearchd.toml"; \
	else \
		umask 077; token=$$($(USER_VENV)/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))') && \
		sed -e 's#^data_dir = "data"#data_dir = "~/.local/share/imgsearchd"#' \
			-e 's#^directories = \[\]#directories = ["~/Pictures"]#' \
			-e 's#^allowed_roots = \[\]#allowed_roots = ["~"]#' \
			-e "s#^token = \"\"#token = \"$$token\"#" config/imgsearchd.toml \
			> $(DESTDIR)$(USER_CONF_DIR)/imgsearchd.toml; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl --user daemon-reload; fi
	@echo "installed; now: systemctl --user enable --now imgsearchd"

uninstall-user-service:
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl --user disable --now imgsearchd || true; fi
	rm -f $(DESTDIR)$(USER_UNIT_DIR)/imgsearchd.service
	$(call remove_venv,$(USER_VENV))
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null; then systemctl --user daemon-reload; fi
	@echo "removed the unit and its venv; left $(USER_CONF_DIR)/imgsearchd.toml and the data in ~/.local/share/imgsearchd (delete them by hand)"

clean-venv:
	rm -rf $(VENV)
