/**
 * Issue #14, "Dishonest output": network progress learns its totals. Both ends show
 * files, bytes, rate and ETA once the sender's walk is done (like rsync
 * --info=progress2); the totals carry "+" only while the walk runs. The model is a
 * pure reducer over the session's events (cli/progress.ts applyProgress); one end-to-end
 * run checks the final line each end draws with --progress=always.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { applyProgress, newNetProgress, renderProgressLine, type ProgressEvent } from '../src/cli/progress.js';
import { transfer } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const KiB = 1024;

test('progress model: "+" while the walk runs, then totals, rate and ETA; up-to-date files count as done', () => {
  const p = newNetProgress(0);
  const feed = (...evs: ProgressEvent[]): void => evs.forEach((e) => applyProgress(p, e));
  feed({ type: 'manifest', files: 2, bytes: 4 * KiB, complete: false });
  assert.equal(renderProgressLine(p, 1000), '0/2+ files  0 B/4.00 KiB+  0 B/s  ETA --:--');
  feed({ type: 'file', how: 'skipped', size: 4 * KiB }, { type: 'bytes', n: 2 * KiB });
  assert.equal(renderProgressLine(p, 1000), '1/2+ files  4.00 KiB/4.00 KiB+  2.00 KiB/s  ETA --:--');
  feed({ type: 'manifest', files: 4, bytes: 12 * KiB, complete: true });
  // 4 KiB up to date + 2 KiB moved of 12 KiB; the rate counts only the 2 KiB that moved.
  assert.equal(renderProgressLine(p, 1000), '1/4 files  6.00 KiB/12.0 KiB  2.00 KiB/s  ETA 00:03');
  // A sparse file whose holes never move: its commit settles its whole size.
  feed({ type: 'file', how: 'committed', size: 4 * KiB }, { type: 'bytes', n: 1 * KiB }, { type: 'file', how: 'committed', size: 4 * KiB });
  assert.equal(renderProgressLine(p, 1000), '3/4 files  12.0 KiB/12.0 KiB  3.00 KiB/s  ETA 00:00');
  feed({ type: 'failed' });
  assert.match(renderProgressLine(p, 1000), /  1 failed$/);
});

test('progress model: a dry run (nothing moves) ends at its totals with ETA 00:00', () => {
  const p = newNetProgress(0);
  applyProgress(p, { type: 'manifest', files: 1, bytes: 100, complete: true });
  assert.equal(renderProgressLine(p, 1000), '0/1 files  0 B/100 B  0 B/s  ETA --:--');
  applyProgress(p, { type: 'file', how: 'committed', size: 100 });
  assert.equal(renderProgressLine(p, 1000), '1/1 files  100 B/100 B  0 B/s  ETA 00:00');
});

/** The last progress line a --progress=always run left on stderr. */
function finalProgressLine(stderr: string): string | undefined {
  const lines = stderr
    .split(/\r|\n/)
    .map((l) => l.replace(/\x1b\[2K/g, ''))
    .filter((l) => / files  /.test(l));
  return lines.at(-1);
}

test('send and recv end with a progress line that knows its totals', async () => {
  const base = await tmpDir('ferry-progress-');
  const src = path.join(base, 'src');
  await makeTree(src, { 'a.bin': Buffer.alloc(200 * KiB, 1), 'b/c.bin': Buffer.alloc(100 * KiB, 2), 'b/d.txt': 'd' });
  const r = await transfer(`${src}/`, path.join(base, 'dst'), ['--progress=always'], ['--progress=always']);
  assert.equal(r.send.code, 0, r.send.stderr);
  assert.equal(r.recv.code, 0, r.recv.stderr);
  for (const [side, stderr] of [['send', r.send.stderr], ['recv', r.recv.stderr]] as const) {
    const line = finalProgressLine(stderr);
    assert.ok(line, `${side}: no progress line in ${JSON.stringify(stderr)}`);
    assert.match(line, /^3\/3 files  300 KiB\/300 KiB  \S+ \S+\/s  ETA 00:00$/, `${side}: ${line}`);
  }
});
