/**
 * The sender's protocol core (src/transfer/sender-core.ts) alone: no disk, no socket.
 * The receiver's replies are untrusted: each hostile reply below meets the one check
 * that refuses it (test/transfer-malicious.test.ts and issue-11-* run the same attacks
 * end to end). Scheduling: resume only when the driver found the prefix hashes equal;
 * a big file over several streams is cut into ranges; the queue closes only when
 * nothing more can be queued.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SourceEntry } from '../src/core/entry.js';
import { ErrorCodes, isFerryError, type ErrorCode } from '../src/core/errors.js';
import { Action, type Decision, type SummaryMsg } from '../src/wire/messages.js';
import { SenderCore, type SenderCoreOptions } from '../src/transfer/sender-core.js';

function src(path: string, kind: SourceEntry['kind'] = 'file', size = 0): SourceEntry {
  return { path, kind, size, mode: 0o644, mtimeNs: 0n, absPath: `/nonexistent/${path}`, allocated: size } as SourceEntry;
}

function core(o: Partial<SenderCoreOptions> = {}): SenderCore {
  return new SenderCore({ streams: 1, dryRun: false, delete: false, splitThreshold: 100, rangeSize: 40, ...o });
}

function refused(f: () => unknown, re: RegExp, code: ErrorCode = ErrorCodes.PROTOCOL): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isFerryError(e), `expected a FerryError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

const send = (index: number): Decision => ({ index, action: Action.SEND, offset: 0 });
const skip = (index: number): Decision => ({ index, action: Action.SKIP, offset: 0 });
const resume = (index: number, offset: number): Decision => ({ index, action: Action.RESUME, offset, prefixHash: new Uint8Array(16) });
const summary = (deleted = 0): SummaryMsg => ({ committed: 0, skipped: 0, failed: 0, dirs: 0, symlinks: 0, hardlinks: 0, deleted, bytesWritten: 0, resumedBytes: 0 });

test('manifest: indexes in walk order; files tracked; MANIFEST_END counts every entry', () => {
  const c = core();
  assert.equal(c.list(src('d', 'dir')), 0);
  assert.equal(c.list(src('d/a', 'file', 5)), 1);
  assert.equal(c.list(src('d/l', 'symlink')), 2);
  assert.equal(c.fileCount, 1);
  assert.equal(c.bytesTotal, 5);
  assert.equal(c.endManifest(), 3);
});

test('decisions: SEND and RESUME become head jobs, SKIP resolves the file; the queue closes once all is decided', () => {
  const c = core();
  for (const p of ['a', 'b', 'c']) c.list(src(p, 'file', 10));
  c.endManifest();
  const { jobs, skipped } = c.onDecisions([send(0), skip(1)]);
  assert.deepEqual(jobs.map((j) => [j.file.index, j.head, j.start, j.end]), [[0, true, 0, 10]]);
  assert.deepEqual(skipped.map((f) => f.index), [1]);
  assert.equal(c.queueDone, false, 'c is undecided');
  const r = c.onDecisions([resume(2, 4)]);
  assert.equal(r.jobs[0]!.resumeOffer!.offset, 4);
  assert.equal(c.queueDone, false, 'head jobs may still split');
  c.startHead(jobs[0]!, false);
  c.headDone(r.jobs[0]!);
  assert.equal(c.queueDone, true);
});

test('hostile decisions: for an index never sent, for a non-file, twice, or a resume past the size', () => {
  const c = core();
  c.list(src('d', 'dir'));
  c.list(src('f', 'file', 10));
  refused(() => c.onDecisions([send(7)]), /not a file we sent/);
  refused(() => c.onDecisions([send(0)]), /not a file we sent/);
  refused(() => c.onDecisions([resume(1, 11)]), /past the size/);
  const d = core();
  d.list(src('f', 'file', 10));
  d.onDecisions([send(0)]);
  refused(() => d.onDecisions([skip(0)]), /second decision/);
  const dry = core({ dryRun: true });
  dry.list(src('f', 'file', 10));
  refused(() => dry.onDecisions([resume(0, 11)]), /past the size/);
});

test('a dry run queues nothing', () => {
  const c = core({ dryRun: true });
  c.list(src('f', 'file', 10));
  assert.deepEqual(c.onDecisions([send(0)]).jobs, []);
});

test('hostile commits: for a file never sent, not decided, twice, or before its data went out', () => {
  const c = core();
  c.list(src('d', 'dir'));
  c.list(src('f', 'file', 10));
  c.list(src('g', 'file', 10));
  refused(() => c.onCommitted([0]), /not a file we sent/);
  refused(() => c.onCommitted([9]), /not a file we sent/);
  refused(() => c.onCommitted([1]), /unexpected commit/);
  const [job] = c.onDecisions([send(1)]).jobs;
  refused(() => c.onCommitted([1]), /before its data was sent/);
  c.startHead(job!, false);
  c.rangeSent(job!.file);
  assert.deepEqual(c.onCommitted([1]).map((f) => f.index), [1]);
  refused(() => c.onCommitted([1]), /unexpected commit/);
  // an aborted file is never committed
  const [j2] = c.onDecisions([send(2)]).jobs;
  c.startHead(j2!, false);
  assert.equal(c.abort(j2!.file), true);
  assert.equal(c.abort(j2!.file), false, 'counted once');
  refused(() => c.onCommitted([2]), /unexpected commit|before its data/);
});

test('hostile failure reports: unknown index, twice, after a commit; our own abort is not counted twice', () => {
  const c = core();
  c.list(src('d', 'dir'));
  c.list(src('f', 'file', 10));
  c.list(src('g', 'file', 10));
  c.list(src('h', 'file', 10));
  refused(() => c.onFailed([{ index: 9, code: 'FERRY_E_WRITE', message: 'x' }]), /unknown entry/);
  const errs = c.onFailed([{ index: 0, code: 'FERRY_E_WRITE', message: 'mkdir' }]);
  assert.equal(errs[0]!.code, ErrorCodes.WRITE);
  assert.equal(errs[0]!.subject, 'd');
  refused(() => c.onFailed([{ index: 0, code: 'FERRY_E_WRITE', message: 'again' }]), /second failure report/);
  // an undecided file reported failed counts as decided and is dropped; an unknown code is REMOTE
  const [e1] = c.onFailed([{ index: 1, code: 'NOT_A_CODE', message: 'odd' }]);
  assert.equal(e1!.code, ErrorCodes.REMOTE);
  // a skipped (resolved) file cannot fail afterwards
  c.onDecisions([skip(2)]);
  refused(() => c.onFailed([{ index: 2, code: 'FERRY_E_WRITE', message: 'x' }]), /already resolved/);
  // we aborted it ourselves: the receiver's report is not counted again
  const [job] = c.onDecisions([send(3)]).jobs;
  c.abort(job!.file);
  assert.deepEqual(c.onFailed([{ index: 3, code: 'FERRY_E_CHANGED', message: 'x' }]), []);
  c.endManifest();
  c.headDone(job!);
  assert.equal(c.queueDone, true);
});

test('hostile DELETED and SUMMARY: without --delete, after SUMMARY, counts that disagree, too early, twice', () => {
  refused(() => core().onDeleted([{ path: 'x', dir: false }]), /without --delete/);
  const c = core({ delete: true });
  c.list(src('f', 'file', 1));
  c.onDeleted([{ path: 'x', dir: false }]);
  refused(() => c.onSummary(summary(1)), /before the manifest was complete/);
  const d = core({ delete: true });
  d.list(src('f', 'file', 1));
  d.endManifest();
  d.onDeleted([{ path: 'x', dir: false }]);
  refused(() => d.onSummary(summary(2)), /counts 2 deletions, DELETED listed 1/);
  const e = core();
  e.list(src('f', 'file', 1));
  e.endManifest();
  refused(() => e.onSummary(summary()), /before f was confirmed/);
  const ok = core({ delete: true });
  ok.list(src('f', 'file', 1));
  ok.endManifest();
  ok.onDecisions([skip(0)]);
  ok.onSummary(summary());
  refused(() => ok.onSummary(summary()), /second SUMMARY/);
  refused(() => ok.onDeleted([{ path: 'y', dir: true }]), /after SUMMARY/);
});

test('resume: honoured only when the prefix hashes agreed', () => {
  const c = core();
  c.list(src('f', 'file', 100));
  c.list(src('g', 'file', 100));
  const { jobs } = c.onDecisions([resume(0, 30), resume(1, 30)]);
  const yes = c.startHead(jobs[0]!, true);
  assert.equal(yes.resumed, 30);
  assert.deepEqual([jobs[0]!.from, jobs[0]!.start, jobs[0]!.end], [30, 30, 100]);
  const no = c.startHead(jobs[1]!, false);
  assert.equal(no.resumed, 0);
  assert.deepEqual([jobs[1]!.from, jobs[1]!.start, jobs[1]!.end], [0, 0, 100]);
  assert.equal(jobs[1]!.resumeOffer, undefined);
});

test('ranges: a big file over several streams is cut from where its data starts; small files and one stream are not', () => {
  const c = core({ streams: 3 });
  c.list(src('big', 'file', 130));
  c.list(src('small', 'file', 99));
  const { jobs } = c.onDecisions([resume(0, 10), send(1)]);
  const { more } = c.startHead(jobs[0]!, true);
  assert.deepEqual([jobs[0]!.start, jobs[0]!.end], [10, 50]);
  assert.deepEqual(more.map((j) => [j.from, j.start, j.end, j.head]), [[10, 50, 90, false], [10, 90, 130, false]]);
  assert.equal(jobs[0]!.file.rangesLeft, 3);
  assert.deepEqual(c.startHead(jobs[1]!, false).more, []);
  assert.equal(jobs[1]!.file.rangesLeft, 1);
  const one = core({ streams: 1 });
  one.list(src('big', 'file', 1000));
  const [j] = one.onDecisions([send(0)]).jobs;
  assert.deepEqual(one.startHead(j!, false).more, []);
  assert.deepEqual([j!.start, j!.end], [0, 1000]);
});
