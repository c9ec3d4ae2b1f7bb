// Parse an AsyncAPI document with the AsyncAPI project's own parser and print its diagnostics
// as JSON lines. Exit status: 0 when the parser reports no error, 1 when it does, 2 on misuse.
// Usage: node validate-asyncapi.mjs document.json
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate-asyncapi.mjs document.json");
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
for (const d of diagnostics) {
  // severity: 0 error, 1 warning, 2 information, 3 hint
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (document === undefined || errors.length > 0) {
  process.exit(1);
}
console.log(JSON.stringify({ ok: true, version: document.version(), operations: document.operations().length }));
