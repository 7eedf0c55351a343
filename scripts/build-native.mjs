#!/usr/bin/env node
// Builds the optional kTLS setsockopt addon (native/ktls.c -> native/build/Release/
// ferry_ktls.node) at install time. Never fails the install: without a C compiler or
// Node's headers ferry runs with the userspace record layer only, and says so here in
// one line.
//
// Why a direct `cc -shared -fPIC` call and not node-gyp: the addon is one C file with
// no dependencies, node-gyp needs Python and (without a local `nodedir`) downloads
// headers, and we must control the flags: never -march=native (the binary must run
// on any x86-64, including the qemu TCG CPU of the kernel lab, which lacks AVX-512).
// native/binding.gyp stays as an alternative for people who prefer node-gyp.
//
// Environment: CC (compiler, default cc), FERRY_NODE_INCLUDE (directory holding
// node_api.h), FERRY_SKIP_NATIVE=1 (skip). The headers are looked for in
// $npm_config_nodedir/include/node, <node prefix>/include/node, /usr/include/node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native', 'ktls.c');
const outDir = join(root, 'native', 'build', 'Release');
const out = join(outDir, 'ferry_ktls.node');

function say(msg) {
  console.log(`ferry: kTLS addon: ${msg}`);
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
  if (process.env.FERRY_SKIP_NATIVE === '1') return say('skipped (FERRY_SKIP_NATIVE=1); userspace TLS only');
  if (process.platform !== 'linux') return say(`skipped: kTLS is Linux-only (this is ${process.platform}); userspace TLS only`);
  if (!existsSync(src)) return say('skipped: native/ktls.c is missing; userspace TLS only');
  const include = findInclude();
  if (!include) return say("skipped: Node's headers (node_api.h) not found; userspace TLS only");
  const cc = process.env.CC || 'cc';
  mkdirSync(outDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const args = ['-O2', '-std=gnu99', '-Wall', '-Wextra', '-shared', '-fPIC', '-fvisibility=hidden',
    `-I${include}`, '-o', tmp, src];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? `${cc}: ${r.error.code ?? r.error.message}` : (r.stderr.trim().split('\n')[0] ?? `${cc} exited ${r.status}`);
    return say(`not built (${why}); userspace TLS only`);
  }
  renameSync(tmp, out); // atomic: a running ferry never sees a half-written addon
  say(`built ${out.slice(root.length + 1)}`);
  buildFsBatch(cc, include);
}

// The file data plane (native/fs-batch.c): batched local copies. Same rules: never
// fatal, never -march=native.
function buildFsBatch(cc, include) {
  const fsOut = join(outDir, 'ferry_fs.node');
  const tmp = `${fsOut}.tmp-${process.pid}`;
  const args = ['-O2', '-std=gnu99', '-Wall', '-Wextra', '-shared', '-fPIC', '-fvisibility=hidden',
    '-DFERRY_FS_BATCH_STANDALONE', `-I${include}`, '-o', tmp, join(root, 'native', 'fs-batch.c')];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? `${cc}: ${r.error.code ?? r.error.message}` : (r.stderr.trim().split('\n')[0] ?? `${cc} exited ${r.status}`);
    return say(`file data plane not built (${why}); TypeScript copies only`);
  }
  renameSync(tmp, fsOut);
  say(`built ${fsOut.slice(root.length + 1)}`);
}

try {
  main();
} catch (e) {
  say(`not built (${e?.message ?? e}); userspace TLS only`);
}
process.exit(0);
