#!/usr/bin/env node
// Builds ferry's data plane, the optional N-API addon native/*.c -> native/build/Release/
// ferry_native.node, at install time: kTLS setsockopt (ktls.c), batched TLS 1.3
// records with Node's own OpenSSL (records.c) and batched local file copies on pool
// threads (fs-batch.c), the network transfer's read/publish batches and content hash (net-batch.c),
// nanosecond times, sparse extents and xattrs (meta.c), the walk's directory listings (fs-walk.c). Never fails the install: without a C
// compiler or Node's headers ferry runs on its TypeScript fallbacks, and says so here in
// one line (and in `ferry --version -v`).
//
// Why a direct `cc -shared -fPIC` call and not node-gyp: a few C files with no
// dependencies, node-gyp needs Python and (without a local `nodedir`) downloads
// headers, and we must control the flags: never -march=native (the binary must run
// on any x86-64, including the qemu TCG CPU of the kernel lab, which lacks AVX-512).
// native/binding.gyp stays as an alternative for people who prefer node-gyp.
//
// Nothing is linked: the EVP_* functions of records.c are looked up in the running
// node binary (dlsym) when the addon loads; their headers are Node's own
// (<include>/openssl, next to node_api.h). Without those headers records.c is built
// as a stub (-DFERRY_NO_OPENSSL) and only kTLS is native.
//
// Environment: CC (compiler, default cc), FERRY_NODE_INCLUDE (directory holding
// node_api.h), FERRY_SKIP_NATIVE=1 (skip). The headers are looked for in
// $npm_config_nodedir/include/node, <node prefix>/include/node, /usr/include/node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sources = ['ferry.c', 'ktls.c', 'records.c', 'fs-batch.c', 'net-batch.c', 'content-hash.c', 'meta.c', 'fs-walk.c'].map((f) => join(root, 'native', f));
const outDir = join(root, 'native', 'build', 'Release');
const out = join(outDir, 'ferry_native.node');

function say(msg) {
  console.log(`ferry: native addon: ${msg}`);
}

function findInclude() {
  const candidates = [
    process.env.FERRY_NODE_INCLUDE,
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(dirname(dirname(process.execPath)), 'include', 'node'),
    process.config?.variables?.node_prefix && join(process.config.variables.node_prefix, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((d) => d && existsSync(join(d, 'node_api.h')));
}

function main() {
  const fallback = 'TypeScript fallbacks only';
  if (process.env.FERRY_SKIP_NATIVE === '1') return say(`skipped (FERRY_SKIP_NATIVE=1); ${fallback}`);
  if (process.platform !== 'linux') return say(`skipped: the addon is Linux-only (this is ${process.platform}); ${fallback}`);
  const missing = sources.find((s) => !existsSync(s));
  if (missing) return say(`skipped: ${missing.slice(root.length + 1)} is missing; ${fallback}`);
  const include = findInclude();
  if (!include) return say(`skipped: Node's headers (node_api.h) not found; ${fallback}`);
  const withOpenssl = existsSync(join(include, 'openssl', 'evp.h'));
  const cc = process.env.CC || 'cc';
  mkdirSync(outDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const args = ['-O2', '-std=gnu99', '-Wall', '-Wextra', '-shared', '-fPIC', '-fvisibility=hidden',
    `-I${include}`, ...(withOpenssl ? [] : ['-DFERRY_NO_OPENSSL']), '-o', tmp, ...sources];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? `${cc}: ${r.error.code ?? r.error.message}` : (r.stderr.trim().split('\n').find((l) => /error/.test(l)) ?? `${cc} exited ${r.status}`);
    return say(`not built (${why}); ${fallback}`);
  }
  if (r.stderr.trim() !== '') console.log(r.stderr.trim());
  renameSync(tmp, out); // atomic: a running ferry never sees a half-written addon
  say(`built ${out.slice(root.length + 1)}${withOpenssl ? '' : ` (no ${join(include, 'openssl')}: records stay in TypeScript)`}`);
}

try {
  main();
} catch (e) {
  say(`not built (${e?.message ?? e}); TypeScript fallbacks only`);
}
process.exit(0);
