# The two commands: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# promtool checks and unit-tests deploy/prometheus/ in the suite (tests/test_deploy.py).
PROMTOOL := .tools/promtool
# The browser tests' tools (tests/browser.py): an identity-aware proxy, a test OpenID provider, axe-core.
# Each version is in a stamp's name (.tools/.NAME-VERSION): a new version makes the stamp newer than the tool,
# which is built again.
OAUTH2_PROXY_VERSION := v7.15.6
OAUTH2_PROXY := .tools/oauth2-proxy
MOCKOIDC := .tools/mockoidc
AXE_VERSION := 4.14.1
AXE := .tools/npm/node_modules/axe-core/axe.min.js
CHROMIUM := /usr/bin/chromium
BROWSER_TOOLS := $(OAUTH2_PROXY) $(MOCKOIDC) $(AXE) $(CHROMIUM)
# Go where its installer puts it when it is not on PATH. GOTOOLCHAIN=local: build with this Go, never fetch
# another; CGO_ENABLED=0: static binaries, no C compiler needed.
GO ?= $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
GO_BUILD_ENV := GOTOOLCHAIN=local CGO_ENABLED=0

.PHONY: run test test-suite lint typecheck docs docs-serve docs-screenshots kafka-start kafka-stop clean container-test dist

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

.tools/.%:
	mkdir -p .tools && rm -f .tools/.$(firstword $(subst -, ,$*))-* && touch $@

# oauth2-proxy built from its Go module, once: about a minute on 2 cores with Go's caches in $$HOME empty, seconds
# with them filled.
$(OAUTH2_PROXY): .tools/.oauth2_proxy-$(OAUTH2_PROXY_VERSION)
	$(GO_BUILD_ENV) GOBIN=$(abspath .tools) $(GO) install github.com/oauth2-proxy/oauth2-proxy/v7@$(OAUTH2_PROXY_VERSION)

# A test OpenID provider: a small main around the mockoidc library (tests/tools/mockoidc/).
$(MOCKOIDC): tests/tools/mockoidc/main.go tests/tools/mockoidc/go.mod tests/tools/mockoidc/go.sum
	mkdir -p .tools
	cd tests/tools/mockoidc && $(GO_BUILD_ENV) $(GO) build -buildvcs=false -o $(abspath $(MOCKOIDC)) .

# axe-core, the accessibility checker the browser tests inject into pages (one file, axe.min.js).
$(AXE): .tools/.axe_core-$(AXE_VERSION)
	npm install --silent --no-audit --no-fund --prefix .tools/npm axe-core@$(AXE_VERSION)
	touch $@

# Debian's chromium for Playwright (whose own browser download cannot be reached), installed when missing (as root).
$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

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

# The screenshots the docs show (docs/assets/inbox/): taken by the inbox's browser tests, in a real chromium.
docs-screenshots: $(STAMP) $(BROWSER_TOOLS)
	$(BIN)/offload-bridge kafka fetch
	INBOX_SCREENSHOTS=$(abspath docs/assets/inbox) $(BIN)/pytest -q tests/test_inbox_browser.py

docs-serve: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict

# The test session starts the local broker if none answers and stops it again at the end. The test files are
# spread over TEST_WORKERS processes (most tests wait on the broker, not the CPU); TEST_WORKERS=0 runs them in one.
# Lint, type-check and the docs' strict build run beside the tests: any of the four failing fails `make test`.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(MAKE) --no-print-directory -j4 lint typecheck docs test-suite

test-suite: $(STAMP) $(PROMTOOL) $(BROWSER_TOOLS)
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
