/**
 * The sender's reader threads (src/transfer/file-reader.ts): whole small files with
 * their hashes, big files as hashed chunk ranges, sparse holes, and every way a source
 * can differ from what the walk saw (changed, shrunk, vanished, a symlink swapped in).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import type { SourceIdentity } from '../src/fs/source-file.js';
import { FileReader } from '../src/transfer/file-reader.js';
import { contentHashOf } from '../src/fs/checksum.js';
import { cleanupTmpDirs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const sha = (b: Uint8Array): Buffer => contentHashOf(b);

/** A temp dir and a reader with `threads` threads, closed afterwards whatever happens. */
async function withReader(threads: number, fn: (r: FileReader, dir: string) => Promise<void>): Promise<void> {
  const dir = await tmpDir();
  const r = new FileReader(threads);
  try {
    await fn(r, dir);
  } finally {
    await r.close();
  }
}

async function target(dir: string, name: string, data?: Uint8Array): Promise<SourceIdentity> {
  const absPath = path.join(dir, name);
  if (data) await fsp.writeFile(absPath, data);
  const st = await fsp.lstat(absPath, { bigint: true });
  return { absPath, path: name, size: Number(st.size), mtimeNs: st.mtimeNs };
}

test('small files: bytes and content hash per file; changed, missing and symlinked files are errors', () =>
  withReader(2, async (r, dir) => {
  const a = await target(dir, 'a', randomBytes(5000));
  const empty = await target(dir, 'empty', new Uint8Array(0));
  const b = await target(dir, 'b', randomBytes(70_000));
  const changed = await target(dir, 'changed', Buffer.from('one'));
  await fsp.writeFile(changed.absPath, Buffer.from('two')); // same size, new mtime (usually)
  await fsp.utimes(changed.absPath, new Date(1_000_000), new Date(1_000_000));
  const gone = await target(dir, 'gone', Buffer.from('x'));
  await fsp.unlink(gone.absPath);
  await fsp.writeFile(path.join(dir, 'real'), 'secret');
  await fsp.symlink(path.join(dir, 'real'), path.join(dir, 'link'));
  const link: SourceIdentity = { absPath: path.join(dir, 'link'), path: 'link', size: 6, mtimeNs: 0n };
  const res = await r.readSmall([a, empty, changed, b, gone, link]);
  assert.equal(res.length, 6);
  for (const [i, t] of [[0, a], [1, empty], [3, b]] as const) {
    const got = res[i]!;
    assert.ok(!isFerryError(got));
    const want = await fsp.readFile(t.absPath);
    assert.ok(got.data.equals(want), `${t.path} bytes`);
    assert.ok(got.hash.equals(sha(want)), `${t.path} hash`);
  }
  const err = (i: number): { code: string; message: string } => {
    const e = res[i];
    assert.ok(isFerryError(e), `entry ${i} should be an error`);
    return e;
  };
  assert.equal(err(2).code, 'FERRY_E_CHANGED');
  assert.match(err(2).message, /^changed: /);
  assert.equal(err(4).code, 'FERRY_E_READ');
  assert.match(err(4).message, /gone: .*ENOENT/);
  assert.equal(err(5).code, 'FERRY_E_READ');
  assert.match(err(5).message, /link: .*ELOOP/);
  }));

test('ranges: chunks in order, buffers recycled, digest of exactly the range', () =>
  withReader(1, async (r, dir) => {
  const data = randomBytes(1_000_003);
  const t = await target(dir, 'big', data);
  for (const [start, end, chunk] of [[0, data.length, 64 * 1024], [100_000, 700_001, 4096], [5, 5, 4096]] as const) {
    const range = r.readRange(t, start, end, { chunk, sparse: false });
    let pos = start;
    for await (const c of range) {
      assert.equal(c.pos, pos);
      assert.ok(c.data);
      assert.ok(c.data.equals(data.subarray(pos, pos + c.len)), `chunk at ${pos}`);
      const ab = c.data.buffer;
      pos += c.len;
      c.release();
      // Released means handed back to the reader thread (transferred), not dropped.
      assert.equal(ab.byteLength, 0, 'a released buffer is transferred back for reuse');
    }
    assert.equal(pos, end);
    assert.ok(range.digest!.equals(sha(data.subarray(start, end))));
  }
  }));

test('ranges: a hole of a sparse file comes without data, still hashed', () =>
  withReader(1, async (r, dir) => {
  const data = Buffer.alloc(3 * 4096);
  data.fill(7, 4096, 8192);
  // A real sparse file (holes on disk, not written zeros): its data is found with
  // SEEK_DATA natively, by zero detection without the addon; the same chunks either way.
  const fh = await fsp.open(path.join(dir, 'sparse'), 'w');
  await fh.write(data, 4096, 4096, 4096);
  await fh.truncate(data.length);
  await fh.close();
  const t = await target(dir, 'sparse');
  const range = r.readRange(t, 0, data.length, { chunk: 4096, sparse: true });
  const kinds: string[] = [];
  for await (const c of range) {
    kinds.push(c.data === null ? 'hole' : 'data');
    c.release();
  }
  assert.deepEqual(kinds, ['hole', 'data', 'hole']);
  assert.ok(range.digest!.equals(sha(data)));
  }));

test('ranges: a file that changed before or during the read is FERRY_E_CHANGED; cancel closes early', () =>
  withReader(1, async (r, dir) => {
  const t = await target(dir, 'f', randomBytes(256 * 1024));
  await assert.rejects(async () => {
    for await (const c of r.readRange({ ...t, mtimeNs: t.mtimeNs - 1_000_000_000n }, 0, t.size, { chunk: 4096, sparse: false })) c.release();
  }, (e: unknown) => isFerryError(e) && e.code === 'FERRY_E_CHANGED' && /^f: changed since it was listed/.test(e.message));

  // Truncate the file while the range is being read: the reader must not hand out an end.
  await assert.rejects(async () => {
    let first = true;
    for await (const c of r.readRange(t, 0, t.size, { chunk: 4096, sparse: false })) {
      if (first) await fsp.truncate(t.absPath, 8192);
      first = false;
      c.release();
    }
  }, (e: unknown) => isFerryError(e) && e.code === 'FERRY_E_CHANGED');

  const t2 = await target(dir, 'g', randomBytes(64 * 1024));
  const range = r.readRange(t2, 0, t2.size, { chunk: 4096, sparse: false });
  for await (const c of range) {
    c.release();
    break; // leaving early cancels the range in the worker
  }
  assert.equal(range.digest, null);
  // The worker is still usable afterwards.
  const again = await r.readSmall([t2]);
  assert.ok(!isFerryError(again[0]) && again[0]!.data.length === 64 * 1024);
  }));
