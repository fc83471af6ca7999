#!/usr/bin/env python3
"""Drive a headless Chromium over the DevTools protocol, for tests.

Usage: cdp_driver.py URL

Starts Chromium with --remote-debugging-pipe (the protocol on the child's fds 3 and 4,
NUL-terminated JSON messages) and a fresh profile directory, opens URL in a page, prints
one JSON line ({"ok": true, "ready": true} or {"ok": false, "error": ...}), then answers
commands read from standard input, one JSON object per line, with one JSON line each:

  {"cmd": "eval", "expr": "1 + 1"}                 -> {"ok": true, "value": 2}
  {"cmd": "navigate", "url": "http://..."}         -> {"ok": true}
  {"cmd": "screenshot", "path": "/tmp/a.png", "width": 1400, "height": 900, "full": false}
                                                   -> {"ok": true, "path": "/tmp/a.png"}
  {"cmd": "console"}                               -> {"ok": true, "value": ["error: ...", ...]}
  {"cmd": "quit"}                                  -> {"ok": true}

Failures answer {"ok": false, "error": "..."}. Any command may carry "timeout" (seconds;
10 by default). Nothing waits without a bound, and Chromium (with every process it started)
is killed and its profile removed on quit, on end of input, on SIGTERM and on any error.
Standard library only.
"""

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_TIMEOUT = 10.0


class DriverError(Exception):
    pass


class Browser:
    """A Chromium process and the protocol pipe to it."""

    def __init__(self, executable):
        self.profile = tempfile.mkdtemp(prefix="portslice-chromium-")
        self.next_id = 0
        self.pending = {}  # id -> [threading.Event, message or None]
        self.events = []  # (method, params, sessionId), newest last
        self.console = []
        self.lock = threading.Condition()
        self.closed = False
        # Chromium reads commands from its fd 3 and writes answers to its fd 4. Its pipe ends are
        # first moved to 10 and above (close-on-exec), so that the child's dup2 onto 3 and 4
        # cannot clobber one with the other, and only the copies on 3 and 4 reach Chromium.
        to_read, to_write = os.pipe()
        from_read, from_write = os.pipe()
        child_in = fcntl.fcntl(to_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_read)
        os.close(from_write)

        def map_fds():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log_path = os.path.join(self.profile, "chromium.log")
        log = open(self.log_path, "wb")
        arguments = [
            executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage",
            "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
            "about:blank",
        ]
        try:
            self.process = subprocess.Popen(
                arguments, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(3, 4), preexec_fn=map_fds, start_new_session=True)
        finally:
            log.close()
            os.close(child_in)
            os.close(child_out)
        self.to_browser = to_write
        self.from_browser = from_read
        threading.Thread(target=self._read_loop, daemon=True).start()

    def _read_loop(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self.from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                try:
                    self._dispatch(json.loads(raw))
                except ValueError:
                    continue
        with self.lock:
            self.closed = True
            for entry in self.pending.values():
                entry[0].set()
            self.lock.notify_all()

    def _dispatch(self, message):
        with self.lock:
            if "id" in message and message["id"] in self.pending:
                entry = self.pending[message["id"]]
                entry[1] = message
                entry[0].set()
                return
            method = message.get("method")
            if method is None:
                return
            params = message.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
                self.console.append("%s: %s" % (params.get("type", "log"), text))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                description = details.get("exception", {}).get("description") or details.get("text", "")
                self.console.append("exception: %s" % description)
            self.events.append((method, params, message.get("sessionId")))
            del self.events[:-200]
            self.lock.notify_all()

    def call(self, method, params=None, session=None, timeout=DEFAULT_TIMEOUT):
        """Sends one protocol command and waits (at most `timeout` s) for its answer."""
        with self.lock:
            if self.closed:
                raise DriverError("chromium has exited: " + self.log_tail())
            self.next_id += 1
            identifier = self.next_id
            entry = [threading.Event(), None]
            self.pending[identifier] = entry
        message = {"id": identifier, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        except OSError as error:
            with self.lock:
                del self.pending[identifier]
            raise DriverError("cannot write to chromium: %s" % error)
        answered = entry[0].wait(timeout)
        with self.lock:
            del self.pending[identifier]
        if not answered:
            raise DriverError("%s: no answer within %g s" % (method, timeout))
        if entry[1] is None:
            raise DriverError("chromium has exited during %s: %s" % (method, self.log_tail()))
        if "error" in entry[1]:
            raise DriverError("%s: %s" % (method, entry[1]["error"].get("message", entry[1]["error"])))
        return entry[1].get("result", {})

    def wait_for_event(self, method, since, session, timeout):
        """Waits for `method` among the events that arrived after index `since`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for seen_method, params, seen_session in self.events[since:]:
                    if seen_method == method and seen_session == session:
                        return params
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise DriverError("%s did not arrive within %g s" % (method, timeout))
                self.lock.wait(remaining)

    def event_count(self):
        with self.lock:
            return len(self.events)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as log:
                return log.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        """Kills Chromium and every process it started, then removes the profile."""
        process = getattr(self, "process", None)
        # Asked politely first, Chromium reaps its own helpers (killed at once they would be
        # orphans, and zombies under an init that does not reap).
        if process is not None and process.poll() is None and not self.closed:
            try:
                self.call("Browser.close", timeout=3)
                process.wait(3)
            except (DriverError, subprocess.TimeoutExpired):
                pass
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                pass
        for descriptor in ("to_browser", "from_browser"):
            if hasattr(self, descriptor):
                try:
                    os.close(getattr(self, descriptor))
                except OSError:
                    pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One page target, attached in flat mode."""

    def __init__(self, browser):
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})
        attached = browser.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, params=None, timeout=DEFAULT_TIMEOUT):
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def navigate(self, url, timeout=DEFAULT_TIMEOUT):
        mark = self.browser.event_count()
        result = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise DriverError("cannot open %s: %s" % (url, result["errorText"]))
        if result.get("loaderId"):  # a new document, not a change of fragment
            self.browser.wait_for_event("Page.loadEventFired", mark, self.session, timeout)

    def evaluate(self, expression, timeout=DEFAULT_TIMEOUT):
        result = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True,
            "timeout": int(timeout * 1000)}, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text", "exception")
            raise DriverError(description)
        return result.get("result", {}).get("value")

    def screenshot(self, path, width, height, full, timeout=DEFAULT_TIMEOUT):
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, timeout=timeout)
        parameters = {"format": "png"}
        if full:
            content = self.call("Page.getLayoutMetrics", timeout=timeout)["cssContentSize"]
            full_height = min(int(content["height"]) + 1, 16384)
            self.call("Emulation.setDeviceMetricsOverride", dict(metrics, height=full_height), timeout=timeout)
            parameters["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", parameters, timeout=timeout)["data"]
        if full:
            self.call("Emulation.setDeviceMetricsOverride", metrics, timeout=timeout)
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))


def answer(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(page, browser):
    """Answers commands from standard input until quit or end of input."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            timeout = float(command.get("timeout", DEFAULT_TIMEOUT))
            name = command.get("cmd")
            if name == "eval":
                answer({"ok": True, "value": page.evaluate(command["expr"], timeout)})
            elif name == "navigate":
                page.navigate(command["url"], timeout)
                answer({"ok": True})
            elif name == "screenshot":
                page.screenshot(command["path"], int(command.get("width", 1400)), int(command.get("height", 900)),
                                bool(command.get("full", False)), timeout)
                answer({"ok": True, "path": command["path"]})
            elif name == "console":
                with browser.lock:
                    answer({"ok": True, "value": list(browser.console)})
            elif name == "quit":
                answer({"ok": True})
                return
            else:
                answer({"ok": False, "error": "unknown command %r" % name})
        except (DriverError, KeyError, ValueError, TypeError, OSError) as error:
            answer({"ok": False, "error": "%s: %s" % (type(error).__name__, error) if isinstance(error, KeyError) else str(error)})


def find_chromium():
    explicit = os.environ.get("PORTSLICE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: cdp_driver.py URL\n")
        return 2
    executable = find_chromium()
    if executable is None:
        answer({"ok": False, "error": "no chromium on PATH (apt-get install chromium)"})
        return 1
    browser = None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        browser = Browser(executable)
        page = Page(browser)
        page.navigate(sys.argv[1], timeout=20)
        answer({"ok": True, "ready": True})
        serve(page, browser)
        return 0
    except DriverError as error:
        answer({"ok": False, "error": str(error)})
        return 1
    finally:
        if browser is not None:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
