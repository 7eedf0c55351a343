#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node:test.
// Node 20's `node --test` takes no globs, so the list is built here.
//
// The suite runs twice: once as installed (the native data plane where it was built)
// and once with FERRY_NATIVE=0 (every TypeScript fallback, no native code loaded), so
// both paths keep the same results. With FERRY_NATIVE set in the environment it runs
// once, that way.
//
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find('dist/test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const passes = process.env.FERRY_NATIVE !== undefined
  ? [{ name: `FERRY_NATIVE=${process.env.FERRY_NATIVE}`, env: process.env }]
  : [
      { name: 'native data plane (where built)', env: process.env },
      { name: 'FERRY_NATIVE=0 (TypeScript fallbacks)', env: { ...process.env, FERRY_NATIVE: '0' } },
    ];
const failed = [];
for (const pass of passes) {
  console.log(`\nrun-tests: ${files.length} file(s), pass: ${pass.name}\n`);
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit', env: pass.env });
  if (r.status !== 0) failed.push(`${pass.name} (exit ${r.status ?? r.signal})`);
}
if (failed.length > 0) {
  console.error(`\nrun-tests: failed: ${failed.join('; ')}`);
  process.exit(1);
}
console.log(`\nrun-tests: every pass succeeded (${passes.map((p) => p.name).join('; ')})`);
