# The browser tests (tests/browser/test_browser.py) drive Debian's Chromium: Playwright's own browser
# download is not reachable from every machine. `make test` installs Chromium when it is missing
# and the machine allows it (apt-get, as root); otherwise the tests skip themselves with one line
# saying how to run them, except under CI=true, where a missing Chromium fails the run.
CHROMIUM_PATH := $(or $(IMAGE_SEARCH_CHROMIUM),/usr/bin/chromium)

.PHONY: chromium

test test-all: chromium

chromium:
	@if [ ! -x "$(CHROMIUM_PATH)" ] && [ -z "$(IMAGE_SEARCH_CHROMIUM)" ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Chromium for the browser tests: apt-get install chromium"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	    || echo "could not install Chromium; the browser tests will be skipped (failed under CI)"; \
	fi
