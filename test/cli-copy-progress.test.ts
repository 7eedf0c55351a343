// Progress and summary rendering (cli/progress.ts, cli/summary.ts): pure functions,
// counters in, strings out; shared by copy, send and recv.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDuration, formatRate, renderProgressLine, ProgressReporter } from '../src/cli/progress.js';
import { renderSummaryLine } from '../src/cli/summary.js';

test('formatBytes / formatRate / formatDuration', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(50 * 1024 * 1024), '50.0 MiB');
  assert.equal(formatBytes(512 * 1024 ** 3), '512 GiB');
  assert.equal(formatRate(2 * 1024 * 1024), '2.00 MiB/s');
  assert.equal(formatDuration(5), '00:05');
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(Infinity), '--:--');
});

test('progress line: files, bytes, rate, ETA; "+" while the walk is still running', () => {
  const c = { filesDone: 10, filesTotal: 40, bytesDone: 1024 * 1024, bytesTotal: 4 * 1024 * 1024, walkDone: false, startedAt: 0 };
  assert.equal(renderProgressLine(c, 1000), '10/40+ files  1.00 MiB/4.00 MiB+  1.00 MiB/s  ETA --:--');
  assert.equal(renderProgressLine({ ...c, walkDone: true }, 1000), '10/40 files  1.00 MiB/4.00 MiB  1.00 MiB/s  ETA 00:03');
  assert.match(renderProgressLine({ ...c, walkDone: true, failed: 2 }, 1000), /2 failed$/);
});

test('summary line: copied, skipped, deleted, failed, seconds, rate; colour only when asked', () => {
  const c = { copied: 3, skipped: 2, failed: 1, bytesCopied: 2048, deleted: 0 };
  assert.equal(renderSummaryLine(c, 2), 'copied 3 (2.00 KiB), skipped 2, deleted 0, failed 1 in 2.00 s (1.00 KiB/s)');
  assert.match(renderSummaryLine(c, 2, { color: true }), /\x1b\[31mfailed 1\x1b\[0m/);
  assert.equal(renderSummaryLine({ ...c, failed: 0 }, 2, { color: true }).includes('\x1b'), false);
  assert.match(renderSummaryLine({ copied: 0, skipped: 0, failed: 0, bytesCopied: 0 }, 0), /^copied 0 \(0 B\), skipped 0, failed 0 in 0\.00 s \(0 B\/s\)$/);
});

test('reporter: never mode writes nothing; clear() only erases a drawn line', () => {
  const writes: string[] = [];
  const stream = { isTTY: true, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream;
  const c = { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, startedAt: 0 };
  const r = new ProgressReporter(c, { mode: 'never', stream });
  r.start();
  r.stop();
  assert.deepEqual(writes, []);
});
