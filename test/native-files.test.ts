/**
 * The network transfer's native batches (native/net-batch.c through
 * src/transfer/native-files.ts and src/fs/small-files.ts) against their TypeScript fallbacks:
 * - the content hash: the same 16 bytes as @node-rs/xxhash's two XXH3-64s, one-shot and
 *   streamed in random pieces, on every length of XXH3's short-input paths (0-240 bytes)
 *   and around its 256-byte buffer and 1 KiB block; a state that is not one is refused;
 * - the sender's batched reads: the same bytes, hashes and errors (FERRY_E_CHANGED for a
 *   changed file or another inode, FERRY_E_READ with ELOOP / ENOENT) as the reader threads;
 * - the receiver's batched publishing: bytes, trailing hole, mode and nanosecond mtime, an
 *   older file and a leftover temp file of ours replaced, a new file seen (inotify) under
 *   its final name only (O_TMPFILE), and on failure nothing left under either name.
 *
 * Skipped with a reason where the addon is not built (with CI=true that is a failure) and
 * under FERRY_NATIVE=0, where the fallbacks run (the transfer tests cover them).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, constants as C, openSync, promises as fsp, watch } from 'node:fs';
import path from 'node:path';
import { FerryError } from '../src/core/errors.js';
import { contentHashOf, contentHashOfJs, newContentHash, newContentHashJs } from '../src/fs/checksum.js';
import { tempNameFor } from '../src/fs/temp-names.js';
import { netBatchAddon } from '../src/native/index.js';
import type { SourceIdentity } from '../src/fs/source-file.js';
import { nativeSmallReader } from '../src/transfer/native-files.js';
import { nativePublisher } from '../src/fs/small-files.js';
import { cleanupTmpDirs, tmpDir } from './support/tree.js';
import { isCI } from './support/tools.js';

after(cleanupTmpDirs);

const n = netBatchAddon();
const skip = n ? false : process.env.FERRY_NATIVE === '0' ? 'FERRY_NATIVE=0: the fallbacks run' : 'the native addon is not built';

test('CI builds the addon: the native pass must have the network batches', () => {
  if (!isCI() || process.env.FERRY_NATIVE === '0') return;
  assert.ok(n, 'CI=true but native/net-batch.c is not in the addon');
});

test('content hash: native one-shot and streamed equal the fallback on every tail length', { skip }, () => {
  let seed = 1;
  const rnd = (k: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % k;
  };
  const lengths = [...Array.from({ length: 242 }, (_, i) => i), 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 65_537, 1 << 20, (1 << 20) + 63];
  for (const len of lengths) {
    const data = randomBytes(len);
    const want = contentHashOfJs(data);
    assert.ok(contentHashOf(data).equals(want), `one-shot, ${len} bytes`);
    const h = newContentHash();
    const j = newContentHashJs();
    for (let off = 0; off < len; ) {
      const k = Math.min(len - off, 1 + rnd(70));
      h.update(data.subarray(off, off + k));
      j.update(data.subarray(off, off + k));
      off += k;
    }
    assert.ok(h.digest().equals(want), `streamed, ${len} bytes`);
    assert.ok(j.digest().equals(want), `fallback streamed, ${len} bytes`);
  }
});

test('content hash: XXH3-64 known answer (xxHash sanity vector: empty input, seed 0)', () => {
  // XXH3_64bits("") = 2D06800538D394C2 (xxHash's tests/sanity_test_vectors.h).
  assert.equal(contentHashOfJs(Buffer.alloc(0)).subarray(0, 8).toString('hex'), '2d06800538d394c2');
  assert.ok(contentHashOf(Buffer.alloc(0)).equals(contentHashOfJs(Buffer.alloc(0))));
});

test('content hash: the addon refuses a state it did not write', { skip }, () => {
  const state = Buffer.alloc(n!.hashStateBytes, 0xff);
  assert.throws(() => n!.hashUpdate(state, Buffer.alloc(10)), RangeError);
  assert.throws(() => n!.hashDigest(state, Buffer.alloc(16)), RangeError);
  assert.throws(() => n!.hashUpdate(Buffer.alloc(8), Buffer.alloc(10)), TypeError);
  n!.hashInit(state);
  n!.hashUpdate(state, Buffer.from('abc'));
  const out = Buffer.alloc(16);
  n!.hashDigest(state, out);
  assert.ok(out.equals(contentHashOfJs(Buffer.from('abc'))));
});

async function target(dir: string, name: string, data?: Uint8Array): Promise<SourceIdentity> {
  const absPath = path.join(dir, name);
  if (data) await fsp.writeFile(absPath, data);
  const st = await fsp.lstat(absPath, { bigint: true });
  return { absPath, path: name, size: Number(st.size), mtimeNs: st.mtimeNs, dev: st.dev, ino: st.ino };
}

test('batched reads: bytes and hashes, and the reader threads\' errors for changed, swapped, missing and symlinked files', { skip }, async () => {
  const dir = await tmpDir();
  const a = await target(dir, 'a', randomBytes(5000));
  const empty = await target(dir, 'empty', new Uint8Array(0));
  const b = await target(dir, 'b', randomBytes(200_000));
  const changed = await target(dir, 'changed', Buffer.from('one'));
  await fsp.utimes(changed.absPath, new Date(1_000_000), new Date(1_000_000));
  const swapped = await target(dir, 'swapped', Buffer.from('same size'));
  await fsp.rename(swapped.absPath, path.join(dir, 'old'));
  await fsp.writeFile(swapped.absPath, 'same size');
  await fsp.utimes(swapped.absPath, new Date(Number(swapped.mtimeNs / 1_000_000n)), new Date(Number(swapped.mtimeNs / 1_000_000n)));
  const gone = await target(dir, 'gone', Buffer.from('x'));
  await fsp.unlink(gone.absPath);
  await fsp.writeFile(path.join(dir, 'real'), 'secret');
  await fsp.symlink(path.join(dir, 'real'), path.join(dir, 'link'));
  const link: SourceIdentity = { absPath: path.join(dir, 'link'), path: 'link', size: 6, mtimeNs: 0n };
  const r = nativeSmallReader()!;
  const batch = await r.read([a, empty, changed, b, swapped, gone, link]);
  const res = batch.results;
  for (const [i, t] of [[0, a], [1, empty], [3, b]] as const) {
    const got = res[i]!;
    assert.ok(!(got instanceof FerryError), `${t.path}: ${String(got)}`);
    const want = await fsp.readFile(t.absPath);
    assert.ok(got.data.equals(want), `${t.path} bytes`);
    assert.ok(got.hash.equals(contentHashOfJs(want)), `${t.path} hash`);
  }
  const err = (i: number): FerryError => {
    const e = res[i];
    assert.ok(e instanceof FerryError, `entry ${i} should be an error`);
    return e;
  };
  assert.equal(err(2).code, 'FERRY_E_CHANGED');
  assert.match(err(2).message, /^changed: changed since it was listed \(its size or modification time changed\)/);
  assert.equal(err(4).code, 'FERRY_E_CHANGED');
  assert.match(err(4).message, /device or inode differ/);
  assert.equal(err(5).code, 'FERRY_E_READ');
  assert.match(err(5).message, /gone: .*ENOENT/);
  assert.equal(err(6).code, 'FERRY_E_READ');
  assert.match(err(6).message, /link: .*ELOOP/);
  batch.release();
  // The released buffer is reused, and the next batch's bytes are its own.
  const again = await r.read([b, a]);
  const [gb, ga] = again.results;
  assert.ok(!(gb instanceof FerryError) && gb!.data.equals(await fsp.readFile(b.absPath)));
  assert.ok(!(ga instanceof FerryError) && ga!.data.equals(await fsp.readFile(a.absPath)));
});

test('batched reads open files a window at a time: every file of a long batch right, failures in place, no descriptor left open', { skip }, async () => {
  const dir = await tmpDir();
  const files: SourceIdentity[] = [];
  for (let i = 0; i < 300; i++) files.push(await target(dir, `f${i}`, randomBytes(1 + ((i * 997) % 9000))));
  // Failures spread over the windows: a vanished file, a changed one, a directory in its place.
  for (const i of [0, 63, 64, 150, 299]) await fsp.unlink(files[i]!.absPath);
  for (const i of [1, 128]) await fsp.appendFile(files[i]!.absPath, 'more');
  await fsp.unlink(files[200]!.absPath);
  await fsp.mkdir(files[200]!.absPath);
  const fdsBefore = (await fsp.readdir('/proc/self/fd')).length;
  const batch = await nativeSmallReader()!.read(files);
  assert.equal((await fsp.readdir('/proc/self/fd')).length, fdsBefore, 'descriptors left open by the batch');
  for (let i = 0; i < files.length; i++) {
    const got = batch.results[i]!;
    if ([0, 63, 64, 150, 299].includes(i)) assert.ok(got instanceof FerryError && got.code === 'FERRY_E_READ', `f${i}: ${String(got)}`);
    else if ([1, 128, 200].includes(i)) assert.ok(got instanceof FerryError && got.code === 'FERRY_E_CHANGED', `f${i}: ${String(got)}`);
    else {
      assert.ok(!(got instanceof FerryError), `f${i}: ${String(got)}`);
      const want = await fsp.readFile(files[i]!.absPath);
      assert.ok(got.data.equals(want) && got.hash.equals(contentHashOfJs(want)), `f${i} bytes and hash`);
    }
  }
  batch.release();
});

test('batched publishing: bytes, trailing hole, mode, nanosecond mtime; an old file and a leftover temp replaced; a failure leaves nothing', { skip }, async () => {
  const dir = await tmpDir();
  const p = nativePublisher()!;
  const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const one = randomBytes(10_000);
  const mtimeNs = 1_700_000_000_123_456_789n;
  // An older file at the final name, and a leftover temp file of an interrupted run
  // under the name this file would use to replace it.
  await fsp.writeFile(path.join(dir, 'one'), 'old');
  await fsp.writeFile(path.join(dir, tempNameFor('one')), 'stale');
  const out = await p.publish(
    [
      { dirFd: dfd, name: 'one', size: one.length, mode: 0o640, mtimeNs, data: one },
      { dirFd: dfd, name: 'holey', size: 9000, mode: 0o600, mtimeNs: -1_500_000_000n, data: Buffer.from('head') },
      { dirFd: 987_654, name: 'x', size: 1, mode: 0o644, mtimeNs, data: Buffer.from('x') },
    ],
    ['one', 'holey', 'missing/x'],
  );
  closeSync(dfd);
  assert.equal(out[0], null);
  assert.equal(out[1], null);
  assert.ok(out[2] instanceof FerryError);
  assert.equal(out[2].code, 'FERRY_E_WRITE');
  assert.match(out[2].message, /missing\/x: .*EBADF/);
  assert.ok((await fsp.readFile(path.join(dir, 'one'))).equals(one));
  const st = await fsp.stat(path.join(dir, 'one'), { bigint: true });
  assert.equal(Number(st.mode & 0o7777n), 0o640);
  assert.equal(st.mtimeNs, mtimeNs);
  const holey = await fsp.readFile(path.join(dir, 'holey'));
  assert.equal(holey.length, 9000);
  assert.equal(holey.subarray(0, 4).toString(), 'head');
  assert.ok(holey.subarray(4).every((x) => x === 0));
  assert.equal((await fsp.stat(path.join(dir, 'holey'), { bigint: true })).mtimeNs, -1_500_000_000n);
  assert.deepEqual((await fsp.readdir(dir)).sort(), ['holey', 'one'], 'no temp file is left');
});

/** Does the filesystem under `dir` create files without a name (O_TMPFILE)? */
function hasNamelessFiles(dir: string): boolean {
  try {
    closeSync(openSync(dir, 0o20000000 | C.O_DIRECTORY | C.O_WRONLY, 0o600));
    return true;
  } catch {
    return false;
  }
}

test('batched publishing: a new file appears under its final name only, never under a temp name (O_TMPFILE + linkat)', { skip }, async (t) => {
  const dir = await tmpDir();
  if (!hasNamelessFiles(dir)) {
    if (isCI()) assert.fail(`the test directory ${dir} has no O_TMPFILE`);
    return t.skip(`the filesystem of ${dir} has no O_TMPFILE`);
  }
  const names: string[] = [];
  const watcher = watch(dir, (_event, name) => {
    if (name) names.push(String(name));
  });
  const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const items = Array.from({ length: 50 }, (_, i) => ({ dirFd: dfd, name: `n${i}`, size: 5, mode: 0o644, mtimeNs: 0n, data: Buffer.from(`f${i}`.padEnd(5)) }));
  const out = await nativePublisher()!.publish(items, items.map((it) => it.name));
  closeSync(dfd);
  await new Promise((r) => setTimeout(r, 100)); // let the watcher's events arrive
  watcher.close();
  assert.ok(out.every((e) => e === null));
  assert.equal((await fsp.readdir(dir)).length, 50);
  assert.ok(names.length >= 50, `the watcher saw ${names.length} events`);
  // The kernel reports writes to a nameless file under "#<inode>", a name no directory holds.
  assert.deepEqual(names.filter((n) => !/^n\d+$/.test(n) && !/^#\d+$/.test(n)), [], 'names other than the final ones appeared');
});

test('batched publishing never follows a symlink at the temp or final name', { skip }, async () => {
  const dir = await tmpDir();
  const outside = await tmpDir();
  await fsp.symlink(path.join(outside, 'victim'), path.join(dir, tempNameFor('f')));
  await fsp.symlink(path.join(outside, 'victim2'), path.join(dir, 'f'));
  const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const out = await nativePublisher()!.publish([{ dirFd: dfd, name: 'f', size: 3, mode: 0o644, mtimeNs: 0n, data: Buffer.from('abc') }], ['f']);
  closeSync(dfd);
  assert.equal(out[0], null);
  assert.equal((await fsp.lstat(path.join(dir, 'f'))).isFile(), true, 'the final name is a regular file now');
  assert.equal((await fsp.readFile(path.join(dir, 'f'))).toString(), 'abc');
  assert.deepEqual(await fsp.readdir(outside), [], 'nothing was written through a symlink');
});

test('batched publishing of more files than one native call takes (4096) is split, not refused', { skip }, async () => {
  const dir = await tmpDir();
  const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const items = Array.from({ length: 5000 }, (_, i) => ({ dirFd: dfd, name: `f${i}`, size: 2, mode: 0o644, mtimeNs: 0n, data: Buffer.from('ok') }));
  const out = await nativePublisher()!.publish(items, items.map((it) => it.name));
  closeSync(dfd);
  assert.equal(out.length, 5000);
  assert.ok(out.every((e) => e === null));
  assert.equal((await fsp.readdir(dir)).length, 5000);
});
