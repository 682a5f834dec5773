# The two commands: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# promtool checks and unit-tests deploy/prometheus/ in the suite (tests/test_deploy.py).
PROMTOOL := .tools/promtool

.PHONY: run test test-suite lint typecheck docs docs-serve kafka-start kafka-stop clean container-test dist

# A virtualenv with the project, its server stack and its dev tools, rebuilt when pyproject.toml changes.
# uv installs the same packages as pip would, in a third of the time.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

# promtool from Debian's prometheus package, unpacked rather than installed: installing the package would also
# start a Prometheus server through its init script. promtool is one static binary; apt-get download needs no
# root, only the package lists, which are refreshed once (as root) when they do not know the package.
$(PROMTOOL):
	rm -rf .tools/deb && mkdir -p .tools/deb
	cd .tools/deb && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg-deb -x .tools/deb/prometheus_*.deb .tools/deb/root
	install -m 0755 .tools/deb/root/usr/bin/promtool $(PROMTOOL)
	rm -rf .tools/deb

# The whole stack on this machine; Ctrl-C stops it. `make run ARGS=--demo` shows cases move. A development
# machine: short or placeholder tokens are accepted (docs: Deploy, Secure by default).
run: $(STAMP)
	OFFLOAD_ALLOW_INSECURE_DEFAULTS=1 $(BIN)/offload-bridge run $(ARGS)

# The wheel and the sdist of offload-bridge, into $(DIST). It is on no package index yet: install the wheel
# (pip install 'dist/offload_bridge-<version>-py3-none-any.whl[server]'). The sdist is built first and the
# wheel from it, so a file the sdist lacks fails here, not on a user's machine.
DIST ?= dist
dist: $(STAMP)
	rm -f $(DIST)/offload_bridge-*
	$(BIN)/uv build --out-dir $(DIST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, into site/. --strict: a broken link or anchor, or any other warning, fails the build.
# The reference pages are rendered from the code as it builds (docs/hooks.py). NO_MKDOCS_2_WARNING keeps a
# banner about MkDocs' next major version out of the output.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict

# The test session starts the local broker if none answers and stops it again at the end. The test files are
# spread over TEST_WORKERS processes (most tests wait on the broker, not the CPU); TEST_WORKERS=0 runs them in one.
# Lint, type-check and the docs' strict build run beside the tests: any of the four failing fails `make test`.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(MAKE) --no-print-directory -j4 lint typecheck docs test-suite

test-suite: $(STAMP) $(PROMTOOL)
	$(BIN)/offload-bridge kafka fetch
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The Dockerfile and docker-compose.yml run for real with podman (deploy/container_test.py): images built from
# Debian's packages and Maven's jars, no image registry needed. Debian's podman, runc and mmdebstrap are
# installed when missing (as root); podman-compose goes into the virtualenv.
PODMAN_COMPOSE := $(VENV)/.podman-compose-1.6.0
$(PODMAN_COMPOSE): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python 'podman-compose==1.6.0'
	touch $@

container-test: $(STAMP) $(PODMAN_COMPOSE)
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || \
		{ apt-get update -q && apt-get install -y -q podman runc mmdebstrap; }
	$(BIN)/offload-bridge kafka fetch
	$(BIN)/python deploy/container_test.py

kafka-start: $(STAMP)
	$(BIN)/offload-bridge kafka start

kafka-stop: $(STAMP)
	$(BIN)/offload-bridge kafka stop

clean:
	-$(BIN)/offload-bridge kafka stop
	rm -rf $(VENV) .tools .kafka .mypy_cache .ruff_cache .pytest_cache site
