/**
 * The receiver's protocol core (src/transfer/receiver-core.ts) alone: no disk, no
 * socket, no timer. Decoded messages and observed facts in, actions and verdicts out.
 * The hostile cases are the same attacks test/transfer-malicious.test.ts runs end to
 * end through a real SafeWriter; here each one meets the single check that refuses it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, isFerryError, type ErrorCode } from '../src/core/errors.js';
import { Action, type WireEntry } from '../src/wire/messages.js';
import { coreFileFields, DROP, newStream, ReceiverCore, type CoreFile, type StreamState } from '../src/transfer/receiver-core.js';

type S = StreamState<CoreFile, string>;

let seq = 0;
function entry(path: string, kind: WireEntry['kind'] = 'file', size = 0, extra: Partial<WireEntry> = {}): WireEntry {
  return { index: seq++, kind, path, size, mode: kind === 'dir' ? 0o755 : 0o644, mtimeNs: 0n, ...extra };
}

/** A manifest from (path, kind, size) triples, indexed from 0. */
function manifest(...items: Array<[string, WireEntry['kind'], number?, Partial<WireEntry>?]>): WireEntry[] {
  seq = 0;
  return items.map(([p, k, n, x]) => entry(p, k, n ?? 0, x ?? {}));
}

function core(o: { maxEntries?: number; maxHoleBytes?: number; maxXattrBytes?: number } = {}): ReceiverCore<CoreFile> {
  return new ReceiverCore<CoreFile>({ peer: 'peer', maxEntries: o.maxEntries ?? 1000, maxHoleBytes: o.maxHoleBytes ?? 1 << 20, ...(o.maxXattrBytes !== undefined ? { maxXattrBytes: o.maxXattrBytes } : {}) });
}

function refused(code: ErrorCode, f: () => unknown, re?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isFerryError(e), `expected a FerryError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

const never = (): boolean => false;
let hashes = 0;
const newHash = (): string => `h${hashes++}`;

/** A core with one file `f` of `size` bytes, asked for (SEND, or RESUME at `offer`). */
function asked(size: number, offer = 0): { c: ReceiverCore<CoreFile>; f: CoreFile; s: S } {
  const c = core();
  const [f] = c.admit(manifest(['f', 'file', size]), coreFileFields);
  c.decideSend(f!, offer, offer > 0 ? new Uint8Array(16) : undefined);
  return { c, f: f!, s: newStream() };
}

const H = (b: number): Uint8Array => new Uint8Array(16).fill(b);

// --- manifest -----------------------------------------------------------------------

test('manifest: files, directories and links listed in order are admitted; files come back for decisions', () => {
  const c = core();
  const files = c.admit(
    manifest(['d', 'dir'], ['d/a', 'file', 5], ['d/l', 'symlink', 0, { target: 'a' }], ['d/h', 'hardlink', 0, { target: 'd/a' }], ['b', 'file', 0]),
    coreFileFields,
  );
  assert.deepEqual(files.map((f) => f.entry.path), ['d/a', 'b']);
  assert.ok(c.paths.has('d/l') && c.dirs.has('d') && !c.dirs.has('d/l'));
  c.endManifest(5);
  assert.equal(c.manifestEnded, true);
  refused(ErrorCodes.PROTOCOL, () => c.admit([entry('late')], coreFileFields), /after MANIFEST_END/);
});

test('manifest: the same path twice is refused', () => {
  refused(ErrorCodes.PROTOCOL, () => core().admit(manifest(['a', 'file', 1], ['a', 'file', 1]), coreFileFields), /listed twice/);
  // across batches too
  const c = core();
  c.admit(manifest(['a', 'dir']), coreFileFields);
  seq = 1;
  refused(ErrorCodes.PROTOCOL, () => c.admit([entry('a', 'file', 1)], coreFileFields), /listed twice/);
});

test('manifest: a file under a symlink entry (a symlink, then a file through it) is refused', () => {
  refused(ErrorCodes.PATH, () => core().admit(manifest(['l', 'symlink', 0, { target: '/etc' }], ['l/passwd', 'file', 10]), coreFileFields), /parent is not a directory/);
});

test('manifest: a file under a directory not listed (or listed later) is refused', () => {
  refused(ErrorCodes.PATH, () => core().admit(manifest(['x/y', 'file', 1], ['x', 'dir']), coreFileFields), /parent is not a directory/);
  refused(ErrorCodes.PATH, () => core().admit(manifest(['f', 'file', 1], ['f/g', 'file', 1]), coreFileFields), /parent is not a directory/);
});

test('manifest: unsafe paths and link targets are refused', () => {
  for (const p of ['../x', '/etc/passwd', 'a/../../x', '', 'a//b', './a']) {
    refused(ErrorCodes.PATH, () => core().admit(manifest([p, 'file', 1]), coreFileFields));
  }
  refused(ErrorCodes.PATH, () => core().admit(manifest(['l', 'symlink', 0, { target: '' }]), coreFileFields), /empty target/);
  refused(ErrorCodes.PATH, () => core().admit(manifest(['l', 'symlink', 0, { target: 'a\0b' }]), coreFileFields), /NUL/);
  refused(ErrorCodes.PATH, () => core().admit(manifest(['f', 'file', 1], ['h', 'hardlink', 0, { target: '../f' }]), coreFileFields), /outside the tree/);
});

test('manifest: a hard link only to a file listed before it', () => {
  refused(ErrorCodes.PROTOCOL, () => core().admit(manifest(['h', 'hardlink', 0, { target: 'f' }], ['f', 'file', 1]), coreFileFields), /not a file listed before/);
  refused(ErrorCodes.PROTOCOL, () => core().admit(manifest(['d', 'dir'], ['h', 'hardlink', 0, { target: 'd' }]), coreFileFields), /not a file listed before/);
});

test('manifest: limits on entries and extended attributes; indexes in sequence; MANIFEST_END counts', () => {
  refused(ErrorCodes.LIMIT, () => core({ maxEntries: 2 }).admit(manifest(['a', 'file'], ['b', 'file'], ['c', 'file']), coreFileFields), /more than 2 entries/);
  const c = core({ maxEntries: 2 });
  c.admit(manifest(['a', 'file'], ['b', 'file']), coreFileFields);
  seq = 2;
  refused(ErrorCodes.LIMIT, () => c.admit([entry('c')], coreFileFields));
  const big: Array<[string, Buffer]> = [['user.x', Buffer.alloc(600)]];
  refused(ErrorCodes.LIMIT, () => core({ maxXattrBytes: 1000 }).admit(manifest(['a', 'file', 0, { xattrs: big }], ['b', 'file', 0, { xattrs: big }]), coreFileFields), /extended attributes/);
  const d = core();
  seq = 3;
  refused(ErrorCodes.PROTOCOL, () => d.admit([entry('a')], coreFileFields), /out of sequence/);
  d.admit(manifest(['a', 'file']), coreFileFields);
  refused(ErrorCodes.PROTOCOL, () => d.endManifest(2), /says 2 entries, 1 arrived/);
  d.endManifest(1);
  refused(ErrorCodes.PROTOCOL, () => d.endManifest(1), /unexpected MANIFEST_END/);
});

// --- decisions ----------------------------------------------------------------------

test('decisions: skip, send, resume only at a possible prefix', () => {
  const c = core();
  const [a, b, r, long] = c.admit(manifest(['a', 'file', 10], ['b', 'file', 10], ['r', 'file', 10], ['l', 'file', 10]), coreFileFields);
  assert.deepEqual(c.decideSkip(a!), { index: 0, action: Action.SKIP, offset: 0 });
  assert.equal(a!.status, 'skipped');
  assert.equal(a!.asked, false);
  assert.deepEqual(c.decideSend(b!), { index: 1, action: Action.SEND, offset: 0 });
  assert.equal(b!.asked, true);
  assert.equal(c.resumeOffer(r!, 4), 4);
  assert.equal(c.resumeOffer(r!, 10), 10);
  assert.equal(c.resumeOffer(long!, 11), 0, 'a leftover longer than the file is no prefix');
  assert.equal(c.resumeOffer(long!, 0), 0);
  const d = c.decideSend(r!, 4, H(1));
  assert.equal(d.action, Action.RESUME);
  assert.equal(d.offset, 4);
  assert.equal(r!.offered, 4);
});

// --- data ---------------------------------------------------------------------------

test('data: a whole file in one range, with a hole, ends complete when the digests agree', () => {
  const { c, f, s } = asked(100);
  assert.equal(c.begin(s, 0, 0, 0, 100, never, newHash), 'open');
  assert.equal(f.from, 0);
  assert.equal(c.chunk(s, 0, 40), 0);
  assert.equal(c.chunk(s, 60, 20), 20, 'the hole before the chunk is hashed as zeros by the driver');
  const r = c.end(s);
  assert.equal(s.cur, null);
  assert.equal(r.end - r.pos, 20, 'a trailing hole');
  assert.equal(c.verdict(r, H(7), H(7)), 'complete');
});

test('data: the small-file path only for a whole first range the driver allows', () => {
  const { c, s } = asked(10);
  const seen: CoreFile[] = [];
  assert.equal(c.begin(s, 0, 0, 0, 10, (f) => (seen.push(f), true), newHash), 'small');
  assert.equal(seen.length, 1);
  const b = asked(10);
  let calls = 0;
  assert.equal(b.c.begin(b.s, 0, 0, 0, 5, () => (calls++, true), newHash), 'open', 'not whole: the usual path');
  assert.equal(calls, 0);
});

test('hostile data: a range past the size of the file is refused', () => {
  const { c, s } = asked(100);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 0, 0, 0, 101, never, newHash), /past the size/);
});

test('hostile data: a range before the resume offset, or a resume we did not offer, is refused', () => {
  const a = asked(100, 40);
  refused(ErrorCodes.PROTOCOL, () => a.c.begin(a.s, 0, 30, 30, 100, never, newHash), /did not offer/);
  const b = asked(100, 40);
  assert.equal(b.c.begin(b.s, 0, 40, 40, 70, never, newHash), 'open');
  b.c.end(b.s);
  refused(ErrorCodes.PROTOCOL, () => b.c.begin(b.s, 0, 0, 0, 10, never, newHash), /disagree on the start/);
  refused(ErrorCodes.PROTOCOL, () => b.c.begin(b.s, 0, 40, 10, 20, never, newHash), /before the start/);
});

test('hostile data: overlapping ranges of a file are refused', () => {
  const { c, s } = asked(100);
  const s2: S = newStream();
  assert.equal(c.begin(s, 0, 0, 0, 50, never, newHash), 'open');
  refused(ErrorCodes.PROTOCOL, () => c.begin(s2, 0, 0, 49, 100, never, newHash), /overlapping/);
  assert.equal(c.begin(s2, 0, 0, 50, 100, never, newHash), 'more', 'adjacent is fine');
});

test('hostile data: one open range per stream; chunks only inside it, in order', () => {
  const { c, s } = asked(100);
  refused(ErrorCodes.PROTOCOL, () => c.chunk(s, 0, 1), /outside a range/);
  refused(ErrorCodes.PROTOCOL, () => c.end(s), /outside a range/);
  c.begin(s, 0, 0, 0, 50, never, newHash);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 0, 0, 50, 100, never, newHash), /inside an open range/);
  refused(ErrorCodes.PROTOCOL, () => c.chunk(s, 45, 6), /outside its range/);
  c.chunk(s, 10, 10);
  refused(ErrorCodes.PROTOCOL, () => c.chunk(s, 15, 1), /outside its range/);
  refused(ErrorCodes.PROTOCOL, () => c.streamEnded(s), /inside a range/);
});

test('hostile data: data for a file we did not ask for, or for an entry that is no file', () => {
  const c = core();
  const [a, b] = c.admit(manifest(['a', 'file', 10], ['b', 'file', 10], ['d', 'dir']), coreFileFields);
  c.decideSkip(a!);
  const s: S = newStream();
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 0, 0, 0, 10, never, newHash), /did not ask for/);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 1, 0, 0, 10, never, newHash), /did not ask for/);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 2, 0, 0, 0, never, newHash), /not a file/);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 9, 0, 0, 0, never, newHash), /not a file/);
  assert.equal(b!.status, 'pending');
});

test('hash mismatch: the verdict fails the file, its bytes never count as ended, nothing of it is published', () => {
  const { c, f, s } = asked(100, 0);
  const s2: S = newStream();
  c.begin(s, 0, 0, 0, 50, never, newHash);
  c.begin(s2, 0, 0, 50, 100, never, newHash);
  c.chunk(s, 0, 50);
  assert.equal(c.verdict(c.end(s), H(1), H(2)), 'mismatch');
  assert.equal(f.ended, 0);
  assert.equal(c.failed(f), true);
  assert.equal(c.failed(f), false, 'failed once');
  // the other stream's range of it goes on arriving: dropped, never 'complete'
  assert.equal(c.chunk(s2, 50, 50), DROP);
  assert.equal(c.end(s2).hash, null, 'no hash: the driver neither verifies nor publishes it');
  assert.equal(f.status, 'failed');
  const t = asked(100);
  t.c.begin(t.s, 0, 0, 0, 100, never, newHash);
  assert.equal(t.c.verdict(t.c.end(t.s), H(1), new Uint8Array(15).fill(1)), 'mismatch', 'a digest of another length');
});

test('publish only when every byte of [from, size) ended well, across ranges and streams', () => {
  const { c, s } = asked(100, 40);
  const s2: S = newStream();
  c.begin(s, 0, 40, 40, 70, never, newHash);
  c.begin(s2, 0, 40, 70, 100, never, newHash);
  assert.equal(c.verdict(c.end(s), H(3), H(3)), 'more');
  assert.equal(c.verdict(c.end(s2), H(3), H(3)), 'complete');
});

test('a file that failed: its chunks are dropped, later ranges swallowed but still held to its size', () => {
  const { c, f, s } = asked(100);
  c.begin(s, 0, 0, 0, 50, never, newHash);
  f.status = 'failed'; // the driver failed it (a write error)
  assert.equal(c.chunk(s, 0, 10), DROP);
  assert.equal(s.cur!.hash, null);
  c.end(s);
  assert.equal(c.begin(s, 0, 0, 50, 100, never, newHash), 'swallow');
  assert.equal(s.cur!.hash, null);
  c.end(s);
  refused(ErrorCodes.PROTOCOL, () => c.begin(s, 0, 0, 50, 101, never, newHash), /past the size/);
});

test('holes are charged against the session budget', () => {
  const c = core({ maxHoleBytes: 100 });
  const [f] = c.admit(manifest(['f', 'file', 1000]), coreFileFields);
  c.chargeHole(60, f!);
  refused(ErrorCodes.LIMIT, () => c.chargeHole(41, f!), /holes in sparse files exceed 100/);
});

test('ABORT: of the open range\'s file or with none open, of a file we asked for, not once it is being published', () => {
  const { c, f, s } = asked(100);
  c.begin(s, 0, 0, 0, 50, never, newHash);
  assert.equal(c.abort(s, 0), f);
  assert.equal(s.cur, null);
  f.status = 'failed';
  assert.equal(c.abort(s, 0), null, 'already failed: nothing more to do');
  const c2 = core();
  const [a, b] = c2.admit(manifest(['a', 'file', 10], ['b', 'file', 10]), coreFileFields);
  c2.decideSend(a!);
  c2.decideSkip(b!);
  const s2: S = newStream();
  c2.begin(s2, 0, 0, 0, 10, never, newHash);
  refused(ErrorCodes.PROTOCOL, () => c2.abort(s2, 1), /other than the open range/);
  c2.end(s2);
  refused(ErrorCodes.PROTOCOL, () => c2.abort(s2, 1), /did not ask for/);
  a!.publishing = true;
  refused(ErrorCodes.PROTOCOL, () => c2.abort(s2, 0), /did not ask for/);
});
