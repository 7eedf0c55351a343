/**
 * The harness plumbing the benchmark figures rest on: a failing pipeline element
 * fails the run (pipefail), a timeout kills the whole process group and says so,
 * peak RSS is read per side, waitListening sees a listener, and a commandTool
 * copy verified against its source compares equal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rss, TimeoutError, commandTool, haveGnuTime, runShell, waitListening } from '../bench/tools.js';
import { generateDataset } from '../bench/datasets.js';
import { compareToSnapshot, snapshotTree } from '../bench/verify.js';
import { requireTool } from './support/tools.js';

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-tools-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('runShell: a failure anywhere in a pipeline fails the run', async () => {
  await runShell('true | cat >/dev/null', { timeoutMs: 10_000, label: 'ok' });
  await assert.rejects(runShell('false | cat >/dev/null', { timeoutMs: 10_000, label: 'pipe' }), /pipe: exit 1/);
});

test('runShell: a timeout kills the whole pipeline and is a TimeoutError', { timeout: 20_000 }, async () => {
  await assert.rejects(runShell('sleep 30 | sleep 30', { timeoutMs: 300, label: 'slow' }), (e: unknown) => e instanceof TimeoutError);
});

test('Rss: peak RSS per side, the largest of each side', { timeout: 20_000 }, async (t) => {
  if (!haveGnuTime()) {
    if (process.env['CI'] === 'true') throw new Error('/usr/bin/time missing; CI=true forbids skipping');
    t.skip('needs GNU time (/usr/bin/time)');
    return;
  }
  await withTmp(async (dir) => {
    const rss = new Rss(dir);
    // A process that holds ~40 MB beside one that holds almost nothing.
    await runShell(
      `${rss.prefix('a')} ${process.execPath} -e "globalThis.b = Buffer.alloc(40e6, 1)" ; ${rss.prefix('a')} true ; ${rss.prefix('b')} true`,
      { timeoutMs: 10_000, label: 'rss' },
    );
    const r = rss.read();
    assert.ok((r['a'] ?? 0) > 40_000, `a: ${r['a']} KiB`);
    assert.ok((r['b'] ?? Infinity) < 40_000, `b: ${r['b']} KiB`);
  });
});

test('waitListening sees a listening port', { timeout: 10_000 }, async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const a = srv.address();
  try {
    await waitListening(typeof a === 'object' && a !== null ? a.port : 0, 5_000);
  } finally {
    srv.close();
  }
});

test('commandTool (cp -r) result verifies equal to the source', { timeout: 20_000 }, async (t) => {
  if (!requireTool(t, 'cp')) return;
  await withTmp(async (dir) => {
    const src = join(dir, 'src');
    await generateDataset(src, { files: 30, minSize: 10, maxSize: 5000, perDir: 7, seed: 3 });
    const tool = commandTool('cp -r', ['cp'], (s, d) => ['cp', '-r', s, d]);
    await tool.prepare?.({ quick: true, full: false, workDir: dir, onCleanup: () => {}, log: () => {} });
    const scratch = join(dir, 'scratch');
    await (await import('node:fs/promises')).mkdir(scratch);
    const res = await tool.run(src, join(dir, 'dst'), { timeoutMs: 10_000, scratch });
    assert.ok('local' in res.rssKb);
    const cmp = await compareToSnapshot(await snapshotTree(src), join(dir, 'dst'));
    assert.equal(cmp.ok, true, cmp.examples.join('; '));
  });
});
