#!/usr/bin/env python3
"""testsummary.py reads the output of `go test -json` and prints a summary.

It prints one line per package (ok / FAIL), then, when something failed,
each failing test's own output (its t.Log lines, the failure messages,
panics), and the output of packages that failed outside any test (build
errors, a panic in TestMain, a timeout). Skipped tests are listed with
their reason.

Exit status: 0 and a last line "PASSED n" when everything passed, 1 when
something failed, 3 when tests were skipped (CI treats a skip as a failure:
a missing database would otherwise pass unnoticed).

Usage: python3 .ci/testsummary.py LOG GO_TEST_EXIT_STATUS
"""

import json
import sys

MAX_LINES_PER_TEST = 300


def main(path, status):
    outputs = {}  # (package, test) -> [lines]
    failed, skipped, pkg_lines, stray = [], [], [], []
    passed = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            try:
                ev = json.loads(raw)
            except ValueError:
                stray.append(raw.rstrip("\n"))  # text go test printed outside JSON
                continue
            action = ev.get("Action")
            pkg = ev.get("Package") or ev.get("ImportPath", "")
            test = ev.get("Test", "")
            if action in ("output", "build-output"):
                outputs.setdefault((pkg, test), []).append(ev.get("Output", "").rstrip("\n"))
            elif action == "build-fail":
                failed.append((pkg, ""))
            elif not test and action in ("pass", "fail", "skip"):
                word = {"pass": "ok  ", "fail": "FAIL", "skip": "?   "}[action]
                pkg_lines.append("%s\t%s\t%.1fs" % (word, pkg, ev.get("Elapsed", 0)))
                if action == "fail":
                    failed.append((pkg, ""))
            elif test and action == "pass":
                passed += 1
            elif test and action == "fail":
                failed.append((pkg, test))
            elif test and action == "skip":
                skipped.append((pkg, test))

    print("\n".join(pkg_lines))
    failed_tests = {p for p, t in failed if t}
    if failed or status != 0:
        print("\ntests failed; the failing tests' output:")
        for pkg, test in failed:
            lines = outputs.get((pkg, test), [])
            if not test:
                if pkg in failed_tests and not any(l.strip() and not l.startswith(("FAIL", "---", "=== ")) for l in lines):
                    continue  # nothing beyond its failing tests
                name = "%s (outside any test)" % pkg
            else:
                name = "%s %s" % (pkg, test)
            print("\n--- %s" % name)
            if len(lines) > MAX_LINES_PER_TEST:
                print("\n".join(lines[:MAX_LINES_PER_TEST // 2]))
                print("... %d lines left out ..." % (len(lines) - MAX_LINES_PER_TEST))
                lines = lines[-MAX_LINES_PER_TEST // 2:]
            print("\n".join(lines))
        if stray:
            print("\n--- other output of go test")
            print("\n".join(stray[-MAX_LINES_PER_TEST:]))
        return 1
    if skipped:
        print("\ntests were skipped (a database or service missing?):")
        for pkg, test in skipped:
            print("--- SKIP %s %s" % (pkg, test))
            print("\n".join(outputs.get((pkg, test), [])[-5:]))
        return 3
    print("PASSED %d" % passed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
