/**
 * Direct I/O for big files (src/fs/direct-io.ts): the network receiver writes, and the
 * sender's reader thread reads, files of at least DIRECT_MIN_BYTES past the page cache
 * where the filesystem allows it. What must hold: the bytes are exactly those of the
 * buffered path (unaligned tails, writes at unaligned offsets, the end of a file read
 * in an aligned block), the page cache is really left alone (cachestat), a file the
 * page cache already holds is read from memory, and without the addon nothing changes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp, readlinkSync } from 'node:fs';
import path from 'node:path';
import type { Entry } from '../src/core/entry.js';
import { DIRECT_MIN_BYTES, DirectFile, DirectReader, directWriteCounts } from '../src/fs/direct-io.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { contentHashOf } from '../src/fs/checksum.js';
import { netBatchAddon } from '../src/native/index.js';
import { FileReader } from '../src/transfer/file-reader.js';
import { nativeSmallReader, smallDirectReads } from '../src/transfer/native-files.js';
import type { SourceIdentity } from '../src/fs/source-file.js';
import { ErrorCodes, FerryError } from '../src/core/errors.js';
import { nativePublisher, smallDirectWrites } from '../src/fs/small-files.js';
import { closeSync, constants as C, openSync } from 'node:fs';
import { cleanupTmpDirs, smallExt4, smallTmpfs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const MiB = 1024 * 1024;
const fe = (p: string, size: number): Entry => ({ path: p, kind: 'file', size, mode: 0o644, mtimeNs: 1_700_000_000_000_000_000n });

/** Whether this directory's filesystem takes direct I/O from this addon; why not, when it does not. */
async function directHere(dir: string): Promise<string | null> {
  const a = netBatchAddon();
  if (a?.directOpen === undefined) return 'the native addon is not in use (FERRY_NATIVE=0 or not built)';
  const fh = await fsp.open(path.join(dir, 'probe'), 'w');
  try {
    const dfd = a.directOpen(fh.fd, new Int32Array(2));
    if (dfd < 0) return `the filesystem of ${dir} refuses direct I/O (errno ${-dfd})`;
    a.directClose!(dfd);
    return null;
  } finally {
    await fh.close();
  }
}

/** The fraction of the file the page cache holds (cachestat), or -1 where the kernel cannot say. */
async function cached(file: string): Promise<number> {
  const fh = await fsp.open(file, 'r');
  try {
    return netBatchAddon()?.cachedFraction?.(fh.fd, (await fh.stat()).size) ?? -1;
  } finally {
    await fh.close();
  }
}

/** Write `data` to `name` in `dst` as the receiver does, in `pieces` [offset, end) (any order). */
async function receive(dst: string, name: string, data: Buffer, pieces: Array<[number, number]>, directWrites: boolean): Promise<void> {
  const w = await SafeWriter.open(dst, { directWrites, writeBehind: true });
  const t = await w.beginFile(fe(name, data.length));
  for (const [a, b] of pieces) await t.write(data.subarray(a, b), a);
  await t.commit();
  await w.finish();
  w.close();
}

test('direct writes (network receiver): a big file in chunks, with an unaligned tail and writes at unaligned offsets, is byte-exact and stays out of the page cache', async (t) => {
  const dst = path.join(await tmpDir(), 'dst');
  await fsp.mkdir(dst);
  const size = DIRECT_MIN_BYTES + 3 * MiB + 4096 * 5 + 123; // ends mid-block
  const data = randomBytes(size);
  // In order: a first piece that ends unaligned, so the next starts at an unaligned offset
  // (written buffered); then whole aligned chunks; the tail; and one rewrite out of order.
  const pieces: Array<[number, number]> = [[0, MiB + 100], [MiB + 100, 2 * MiB]];
  for (let off = 2 * MiB; off < size; off += MiB) pieces.push([off, Math.min(size, off + MiB)]);
  pieces.push([4 * MiB, 5 * MiB]);

  const before = { ...directWriteCounts };
  await receive(dst, 'direct.bin', data, pieces, true);
  const frac = await cached(path.join(dst, 'direct.bin')); // before the content check reads it in
  assert.deepEqual(await fsp.readFile(path.join(dst, 'direct.bin')), data, 'content');
  const opened = directWriteCounts.opened - before.opened;
  const bytes = directWriteCounts.bytes - before.bytes;

  const why = await directHere(dst);
  if (why !== null) {
    assert.equal(opened, 0, 'no direct descriptor where direct I/O is not available');
    if (netBatchAddon()?.directOpen !== undefined && process.env['CI'] === 'true') assert.fail(`direct I/O must work in CI: ${why}`);
    t.diagnostic(`buffered path only: ${why}`);
    return;
  }
  assert.equal(opened, 1, 'one direct descriptor for the file');
  // Everything but the piece at an unaligned offset and the partial block at the end went direct.
  assert.ok(bytes >= size - 2 * MiB && bytes <= size + MiB, `direct bytes: ${bytes} of ${size}`);
  if (frac >= 0) assert.ok(frac < 0.25, `the page cache holds ${(frac * 100).toFixed(0)}% of a file written direct`);

  // The same writer without directWrites goes through the page cache: the check above can fail.
  const b2 = { ...directWriteCounts };
  await receive(dst, 'buffered.bin', data, pieces, false);
  const fracBuffered = await cached(path.join(dst, 'buffered.bin'));
  assert.deepEqual(await fsp.readFile(path.join(dst, 'buffered.bin')), data);
  assert.equal(directWriteCounts.opened - b2.opened, 0, 'no direct writes unless the writer asks');
  if (fracBuffered >= 0) assert.ok(fracBuffered > 0.9, `a buffered file is in the page cache (${(fracBuffered * 100).toFixed(0)}%)`);

  // A small file is written buffered even when asked.
  const b3 = { ...directWriteCounts };
  const small = data.subarray(0, DIRECT_MIN_BYTES - 1);
  await receive(dst, 'small.bin', small, [[0, small.length]], true);
  assert.deepEqual(await fsp.readFile(path.join(dst, 'small.bin')), small);
  assert.equal(directWriteCounts.opened - b3.opened, 0, 'files under DIRECT_MIN_BYTES stay buffered');
});

test('direct reads (sender): a big file the page cache does not hold is read past it, byte-exact to the end; a cached one from memory', async (t) => {
  const dir = await tmpDir();
  const why = await directHere(dir);
  if (why !== null) {
    if (netBatchAddon()?.directOpen !== undefined && process.env['CI'] === 'true') assert.fail(`direct I/O must work in CI: ${why}`);
    t.skip(why);
    return;
  }
  const size = DIRECT_MIN_BYTES + 2 * MiB + 777; // the last chunk ends mid-block
  const data = randomBytes(size);
  const file = path.join(dir, 'cold.bin');
  // Written direct, so that the page cache does not hold it: the sender's cold-read case.
  const fh = await fsp.open(file, 'w');
  const d = DirectFile.open(fh.fd)!;
  assert.ok(d, 'a direct descriptor');
  for (let off = 0; off < size; off += MiB) await d.write(data.subarray(off, Math.min(size, off + MiB)), off);
  await d.close();
  await fsp.utimes(file, new Date(1_000_000), new Date(1_000_000));
  const frac0 = await cached(file);
  assert.ok(frac0 >= 0 && frac0 < 0.25, `set-up: the page cache holds ${(frac0 * 100).toFixed(0)}% of the file`);
  const dr = DirectReader.open(fh.fd, size);
  assert.ok(dr, 'an uncached big file is read direct');
  dr.close();
  const align = new Int32Array(2);
  netBatchAddon()!.directClose!(netBatchAddon()!.directOpen!(fh.fd, align, false));
  await fh.close();

  const st = await fsp.stat(file, { bigint: true });
  const r = new FileReader(1);
  try {
    const range = r.readRange({ absPath: file, path: 'cold.bin', size, mtimeNs: st.mtimeNs }, 0, size, { chunk: MiB, sparse: false });
    const got: Buffer[] = [];
    for await (const c of range) {
      // Each chunk was read from the disk straight into its buffer: placed at an address the
      // filesystem's direct I/O accepts (else the read goes through a staging copy).
      assert.equal(netBatchAddon()!.alignGap!(c.data!, align[0]!), 0, `chunk at ${c.pos} is in memory aligned to ${align[0]}`);
      got.push(Buffer.from(c.data!));
      c.release();
    }
    assert.deepEqual(Buffer.concat(got), data, 'every byte, the unaligned end included');
    assert.deepEqual(range.digest, contentHashOf(data));
    // A range abandoned after its first chunk (the receiver dropped the file) closes its
    // direct descriptor too: no descriptor on the file is left open.
    for (let i = 0; i < 3; i++) {
      for await (const c of r.readRange({ absPath: file, path: 'cold.bin', size, mtimeNs: st.mtimeNs }, 0, size, { chunk: MiB, sparse: false })) {
        c.release();
        break;
      }
    }
    const small = path.join(dir, 'after.bin');
    await fsp.writeFile(small, 'x');
    const sst = await fsp.stat(small, { bigint: true });
    for await (const c of r.readRange({ absPath: small, path: 'after.bin', size: 1, mtimeNs: sst.mtimeNs }, 0, 1, { chunk: MiB, sparse: false })) c.release(); // after the cancels, in order
    const open = (await fsp.readdir('/proc/self/fd')).filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
    assert.equal(open.length, 0, `descriptors left open on the file after cancelled ranges: ${open.length}`);
  } finally {
    await r.close();
  }
  const frac1 = await cached(file);
  assert.ok(frac1 < 0.25, `read direct, the file is still not in the page cache (${(frac1 * 100).toFixed(0)}%)`);

  // Read once buffered, the file is in memory: then it is read from there, not from the disk.
  await fsp.readFile(file);
  const fh2 = await fsp.open(file, 'r');
  try {
    assert.equal(DirectReader.open(fh2.fd, size), null, 'a cached file is read buffered');
    assert.equal(DirectReader.open(fh2.fd, DIRECT_MIN_BYTES - 1), null, 'a small file is read buffered');
  } finally {
    await fh2.close();
  }
});

/** Write `data` to `file` so that the page cache does not hold it (its aligned part direct), with a fixed mtime; its identity. */
async function writeCold(file: string, data: Buffer): Promise<SourceIdentity> {
  const fh = await fsp.open(file, 'w');
  const d = DirectFile.open(fh.fd)!;
  assert.ok(d, 'a direct descriptor');
  if (data.length > 0) await d.write(data, 0);
  await d.close();
  await fh.close();
  await fsp.utimes(file, new Date(1_000_000), new Date(1_000_000));
  const st = await fsp.stat(file, { bigint: true });
  return { absPath: file, path: path.basename(file), size: data.length, mtimeNs: st.mtimeNs, dev: st.dev, ino: st.ino };
}

test('direct reads (sender, small files): a batch of files the page cache does not hold is read past it, byte-exact, with the right hashes; a cached one and a changed one as before', async (t) => {
  const dir = await tmpDir();
  const why = await directHere(dir);
  const reader = nativeSmallReader();
  if (why !== null || reader === undefined) {
    if (netBatchAddon()?.directOpen !== undefined && process.env['CI'] === 'true') assert.fail(`direct I/O must work in CI: ${why}`);
    t.skip(why ?? 'the native addon is not in use');
    return;
  }
  // Sizes with unaligned ends, exact multiples of a block, one byte; up to the 1 MiB limit.
  const sizes = [100_000, 4096, 8192 * 3, 65_537, 1, 300_001, 1024 * 1024, 150_000, 12_345, 777_777];
  const datas = sizes.map((n) => randomBytes(n));
  const files = await Promise.all(datas.map((d, i) => writeCold(path.join(dir, `f${i}`), d)));
  const cold = [];
  for (const f of files) if ((await cached(f.absPath)) <= 0.25) cold.push(f.path);
  assert.ok(cold.length >= sizes.length - 1, `set-up: cold files ${cold.join(' ')}`); // one byte: its only page cached
  // A cached file, and one whose listed size is no longer its size.
  const warm = randomBytes(200_000);
  await fsp.writeFile(path.join(dir, 'warm'), warm);
  const wst = await fsp.stat(path.join(dir, 'warm'), { bigint: true });
  files.push({ absPath: path.join(dir, 'warm'), path: 'warm', size: warm.length, mtimeNs: wst.mtimeNs });
  const changed = await writeCold(path.join(dir, 'changed'), randomBytes(50_000));
  files.push({ ...changed, size: 40_000 });

  const before = smallDirectReads.files;
  const { results, release } = await reader.read(files);
  assert.equal(smallDirectReads.files - before, cold.length, 'every cold file was read direct');
  for (let i = 0; i < datas.length; i++) {
    const r = results[i]!;
    assert.ok(!(r instanceof Error), `${files[i]!.path}: ${String(r)}`);
    assert.deepEqual(r.data, datas[i], `${files[i]!.path}: bytes`);
    assert.deepEqual(r.hash, contentHashOf(datas[i]!), `${files[i]!.path}: hash`);
  }
  const w = results[datas.length]!;
  assert.ok(!(w instanceof Error) && w.data.equals(warm), 'the cached file');
  const c = results[datas.length + 1]!;
  assert.ok(c instanceof FerryError && c.code === ErrorCodes.CHANGED, `the changed file: ${String(c)}`);
  release();
  for (const f of files.slice(0, datas.length)) {
    if (cold.includes(f.path)) assert.ok((await cached(f.absPath)) <= 0.25, `${f.path}: read direct, still not in the page cache`);
  }

  // More than the staging memory in one window: the rest go buffered, the bytes are the same.
  const many = Array.from({ length: 40 }, () => randomBytes(300_000 + Math.floor(Math.random() * 4096)));
  const manyFiles = await Promise.all(many.map((d, i) => writeCold(path.join(dir, `m${i}`), d)));
  const b2 = smallDirectReads.files;
  const r2 = await reader.read(manyFiles);
  const direct2 = smallDirectReads.files - b2;
  assert.ok(direct2 > 0 && direct2 < many.length, `some but not all of 12 MB read direct: ${direct2}`);
  many.forEach((d, i) => assert.deepEqual((r2.results[i] as { data: Buffer }).data, d, `m${i}`));
  r2.release();

  // Direct reads off: the same results, none direct (and the files come into the page cache).
  const b3 = smallDirectReads.files;
  reader.direct = false;
  try {
    const again = await reader.read(files.slice(0, datas.length));
    assert.equal(smallDirectReads.files - b3, 0);
    again.results.forEach((r, i) => assert.deepEqual((r as { data: Buffer }).data, datas[i]));
    again.release();
  } finally {
    reader.direct = true;
  }
});

test('direct writes on a full disk: a direct write that fails (ENOSPC, not a refusal) is FERRY_E_NOSPC for the file, and nothing is published', async (t) => {
  const root = await tmpDir();
  const disk = await smallExt4(t, root, 16);
  if (disk === null) return;
  try {
    const why = await directHere(disk.dir);
    if (why !== null) {
      if (netBatchAddon()?.directOpen !== undefined && process.env['CI'] === 'true') assert.fail(`direct I/O must work in CI: ${why}`);
      t.skip(why);
      return;
    }
    await fsp.unlink(path.join(disk.dir, 'probe'));
    const data = randomBytes(DIRECT_MIN_BYTES + 12 * MiB + 5); // more than the 16 MiB filesystem holds
    const before = { ...directWriteCounts };
    const w = await SafeWriter.open(disk.dir, { directWrites: true });
    const tf = await w.beginFile(fe('big.bin', data.length));
    let err: unknown = null;
    try {
      for (let off = 0; off < data.length; off += MiB) await tf.write(data.subarray(off, Math.min(data.length, off + MiB)), off);
      await tf.commit();
    } catch (e) {
      err = e;
      await tf.abort();
    }
    await w.finish();
    w.close();
    assert.ok(err instanceof FerryError && err.code === ErrorCodes.NOSPC, `the failure: ${String(err)}`);
    assert.match(err.message, /big\.bin/, 'the message names the file');
    assert.equal(directWriteCounts.opened - before.opened, 1, 'the file was written direct');
    assert.ok(directWriteCounts.bytes - before.bytes >= MiB, 'its first MiBs went direct before the disk filled');
    const left = (await fsp.readdir(disk.dir)).filter((n) => n !== 'lost+found');
    assert.deepEqual(left, [], 'nothing under the final name, no temp file left');
  } finally {
    disk.unmount();
  }
});

// The receiver's small files (fs/small-files NativePublisher with `direct`): the whole
// 4 KiB blocks of a file with 16 KiB or more of them, up to the 1 MiB staging buffer,
// go to disk with O_DIRECT, the tail buffered; shorter and longer files buffered.
const publishSizes = [1, 4095, 16383, 16384, 20_000, 100_003, 300_000, MiB + 5, 2 * MiB + 1];
const writtenDirect = (n: number): boolean => Math.floor(n / 4096) * 4096 >= 16384 && Math.floor(n / 4096) * 4096 <= MiB;

async function publishAll(dir: string, direct: boolean): Promise<{ datas: Buffer[]; direct: number }> {
  const datas = publishSizes.map((n) => randomBytes(n));
  const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  const before = smallDirectWrites.files;
  try {
    const items = datas.map((data, i) => ({ dirFd: dfd, name: `s${i}`, size: data.length, mode: 0o640, mtimeNs: 1_700_000_000_123_456_789n, data }));
    const out = await nativePublisher()!.publish(items, items.map((it) => it.name), { direct });
    assert.deepEqual(out, items.map(() => null));
  } finally {
    closeSync(dfd);
  }
  return { datas, direct: smallDirectWrites.files - before };
}

test('direct writes (receiver, small files): whole blocks past the page cache, the tail buffered; byte-exact with mode and mtime; direct: false as before', async (t) => {
  const dir = await tmpDir();
  const why = await directHere(dir);
  if (why !== null) return t.skip(why);
  const r = await publishAll(dir, true);
  assert.equal(r.direct, publishSizes.filter(writtenDirect).length);
  for (const [i, n] of publishSizes.entries()) {
    const f = path.join(dir, `s${i}`);
    assert.ok((await fsp.readFile(f)).equals(r.datas[i]!), `s${i} (${n} bytes) byte-exact`);
    const st = await fsp.stat(f, { bigint: true });
    assert.equal(Number(st.mode & 0o7777n), 0o640);
    assert.equal(st.mtimeNs, 1_700_000_000_123_456_789n);
  }
  // Reading them back cached them: the page cache is looked at on a second set, fresh.
  const dir2 = await tmpDir();
  await publishAll(dir2, true);
  for (const [i, n] of publishSizes.entries()) {
    const c = await cached(path.join(dir2, `s${i}`));
    if (c < 0) return t.skip('cachestat is not available here');
    if (writtenDirect(n)) assert.ok(c <= 1 / Math.ceil(n / 4096) + 0.01, `s${i} (${n} bytes): ${c} of it cached, at most its tail should be`);
    else if (n >= 4096) assert.ok(c > 0.9, `s${i} (${n} bytes) written buffered: ${c} cached`);
  }
  const dir3 = await tmpDir();
  const b = await publishAll(dir3, false);
  assert.equal(b.direct, 0);
  for (const [i] of publishSizes.entries()) assert.ok((await fsp.readFile(path.join(dir3, `s${i}`))).equals(b.datas[i]!));
});

// tmpfs refused O_DIRECT (EINVAL: the batch goes on buffered) before Linux 6.6 and takes
// it as buffered I/O since: either way every file must be byte-exact.
test('direct writes (receiver, small files) on tmpfs: every file byte-exact, whether the kernel refuses O_DIRECT there or not', async (t) => {
  if (nativePublisher() === undefined) return t.skip('the native addon is not in use (FERRY_NATIVE=0 or not built)');
  const root = await tmpDir();
  const fs = await smallTmpfs(t, root, '16m');
  if (fs === null) return;
  try {
    const r = await publishAll(fs.dir, true);
    for (const [i] of publishSizes.entries()) assert.ok((await fsp.readFile(path.join(fs.dir, `s${i}`))).equals(r.datas[i]!));
  } finally {
    fs.unmount();
  }
});

test('direct writes (receiver, small files) on a full disk: FERRY_E_NOSPC for the files that do not fit, nothing partial published', async (t) => {
  if (nativePublisher() === undefined) return t.skip('the native addon is not in use (FERRY_NATIVE=0 or not built)');
  const root = await tmpDir();
  const disk = await smallExt4(t, root, 16);
  if (disk === null) return;
  try {
    const datas = Array.from({ length: 40 }, () => randomBytes(512 * 1024));
    const dfd = openSync(disk.dir, C.O_RDONLY | C.O_DIRECTORY);
    const before = smallDirectWrites.files;
    let out;
    try {
      const items = datas.map((data, i) => ({ dirFd: dfd, name: `f${i}`, size: data.length, mode: 0o644, mtimeNs: 0n, data }));
      out = await nativePublisher()!.publish(items, items.map((it) => it.name), { direct: true });
    } finally {
      closeSync(dfd);
    }
    assert.ok(smallDirectWrites.files > before, 'files were written direct');
    const failed = out.map((e, i) => [e, i] as const).filter(([e]) => e !== null);
    assert.ok(failed.length > 0, 'the disk filled up');
    for (const [e, i] of failed) {
      assert.ok(e instanceof FerryError && e.code === ErrorCodes.NOSPC, `f${i}: ${String(e)}`);
      assert.match(e.message, new RegExp(`f${i}\\b`));
    }
    const names = new Set(await fsp.readdir(disk.dir));
    for (const [i, data] of datas.entries()) {
      if (out[i] === null) assert.ok((await fsp.readFile(path.join(disk.dir, `f${i}`))).equals(data), `f${i} published whole`);
      else assert.ok(!names.has(`f${i}`), `f${i} failed and is not there`);
    }
    assert.deepEqual([...names].filter((n) => n.startsWith('.ferry-')), [], 'no temp file left');
  } finally {
    disk.unmount();
  }
});
