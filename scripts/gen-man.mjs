#!/usr/bin/env node
// Writes man/ferry.1 from the --help texts (dist/src/cli/man.js, built by tsc first;
// `npm run build` and `prepare` run both). With --check it writes nothing and exits 1
// when the committed page is not what the help texts make.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url);
const { renderManPage } = await import(new URL('dist/src/cli/man.js', root).href);
const page = renderManPage();
const target = fileURLToPath(new URL('man/ferry.1', root));
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {}
  if (current !== page) {
    console.error('gen-man: man/ferry.1 is out of date; run: npm run build (or node scripts/gen-man.mjs)');
    process.exit(1);
  }
} else {
  mkdirSync(fileURLToPath(new URL('man/', root)), { recursive: true });
  writeFileSync(target, page);
}
