// The Sink (fs/safe-writer.ts): atomic publish, out-of-order writes, resume, quick check.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Entry } from '../src/core/entry.js';
import { SafeWriter, mtimesEqual, nsToSeconds, storedMtimeNs } from '../src/fs/safe-writer.js';
import { nanosecondTimes } from '../src/fs/meta-native.js';
import { isFerryTempName, tempNameFor } from '../src/fs/temp-names.js';
import { WRITE_BEHIND_BYTES, writeBehindAvailable, writeBehindCounts } from '../src/fs/write-behind.js';
import { cleanupTmpDirs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const MTIME = 1_700_000_000_123_456_789n;
const fe = (p: string, size: number, mode = 0o640): Entry => ({ path: p, kind: 'file', size, mode, mtimeNs: MTIME });

test('chunks out of order land byte-exact; nothing under the final name before commit', async () => {
  const dst = path.join(await tmpDir(), 'dst');
  const w = await SafeWriter.open(dst);
  const data = Buffer.from('0123456789abcdefghij');
  const t = await w.beginFile(fe('d/f', data.length));
  await t.write(data.subarray(10), 10);
  await assert.rejects(fsp.access(path.join(dst, 'd/f')));
  await t.write(data.subarray(0, 10), 0);
  assert.ok(isFerryTempName(path.basename(t.tempPath)));
  await t.commit();
  assert.deepEqual(await fsp.readFile(path.join(dst, 'd/f')), data);
  const st = await fsp.stat(path.join(dst, 'd/f'), { bigint: true });
  assert.equal(Number(st.mode & 0o777n), 0o640);
  assert.ok(mtimesEqual(st.mtimeNs, MTIME));
  assert.deepEqual(await fsp.readdir(path.join(dst, 'd')), ['f']);
  assert.equal(await w.quickCheck(fe('d/f', data.length)), 'same');
  assert.equal(await w.quickCheck(fe('d/f', data.length + 1)), 'differs');
  // Same size, other mtime: the content is unknown ('touched': compared, or copied, by the caller).
  assert.equal(await w.quickCheck({ ...fe('d/f', data.length), mtimeNs: MTIME + 5000n }), 'touched');
  assert.equal(await w.quickCheck({ ...fe('d/f', data.length), mode: 0o600 }), 'meta');
  assert.equal(await w.quickCheck(fe('d/missing', 1)), 'missing');
});

test('abort leaves no temp file and no final file', async () => {
  const dst = path.join(await tmpDir(), 'dst');
  const w = await SafeWriter.open(dst);
  const t = await w.beginFile(fe('x', 4));
  await t.write(Buffer.from('ab'), 0);
  await t.abort();
  assert.deepEqual(await fsp.readdir(dst), []);
});

test('--link-dest: a link to a file other than the one checked is refused, and no temp name is left behind', async () => {
  const root = await tmpDir();
  const dst = path.join(root, 'dst');
  const outside = path.join(root, 'outside');
  await fsp.writeFile(outside, 'same bytes');
  const st = await fsp.stat(outside, { bigint: true });
  const w = await SafeWriter.open(dst);
  // The inode the caller checked is not the one linked (the file was replaced meanwhile).
  await assert.rejects(w.linkFrom(fe('d/f', 10), outside, { ino: st.ino + 1n, dev: st.dev }), (e: unknown) => (e as { code?: string }).code === 'FERRY_E_CHANGED');
  assert.deepEqual(await fsp.readdir(path.join(dst, 'd')), []);
  await w.linkFrom(fe('d/f', 10), outside, { ino: st.ino, dev: st.dev });
  assert.deepEqual(await fsp.readdir(path.join(dst, 'd')), ['f']);
  assert.equal((await fsp.stat(path.join(dst, 'd/f'))).ino, Number(st.ino));
});

test('resume: an earlier temp file is found and its prefix reported; without resume it is replaced', async () => {
  const dst = path.join(await tmpDir(), 'dst');
  await fsp.mkdir(dst);
  await fsp.writeFile(path.join(dst, tempNameFor('big')), 'hello');
  const w = await SafeWriter.open(dst);
  const t = await w.beginFile(fe('big', 11), { resume: true });
  assert.equal(await t.existingPrefix(), 5);
  await t.write(Buffer.from(' world'), 5);
  await t.commit();
  assert.equal(await fsp.readFile(path.join(dst, 'big'), 'utf8'), 'hello world');
  await fsp.writeFile(path.join(dst, tempNameFor('big2')), 'junk');
  const t2 = await w.beginFile(fe('big2', 2));
  assert.equal(await t2.existingPrefix(), 0);
  await t2.write(Buffer.from('ok'), 0);
  await t2.commit();
  assert.equal(await fsp.readFile(path.join(dst, 'big2'), 'utf8'), 'ok');
  assert.deepEqual((await fsp.readdir(dst)).sort(), ['big', 'big2']);
});

test('a resumed temp file that is a symlink is not adopted', async () => {
  const base = await tmpDir();
  const dst = path.join(base, 'dst');
  await fsp.mkdir(dst);
  await fsp.writeFile(path.join(base, 'victim'), 'keep');
  await fsp.symlink(path.join(base, 'victim'), path.join(dst, tempNameFor('f')));
  const w = await SafeWriter.open(dst);
  const t = await w.beginFile(fe('f', 3), { resume: true });
  assert.equal(await t.existingPrefix(), 0);
  await t.write(Buffer.from('new'), 0);
  await t.commit();
  assert.equal(await fsp.readFile(path.join(base, 'victim'), 'utf8'), 'keep');
});

test('finish: leftover temp files removed, directory mode/mtime set after contents', async () => {
  const dst = path.join(await tmpDir(), 'dst');
  const w = await SafeWriter.open(dst);
  await w.mkdir({ path: 'ro', kind: 'dir', size: 0, mode: 0o555, mtimeNs: MTIME });
  await fsp.writeFile(path.join(dst, 'ro', '.ferry-deadbeef.old.part'), 'left over');
  await fsp.writeFile(path.join(dst, 'ro', 'not-ours.part'), 'user data');
  const t = await w.beginFile(fe('ro/f', 1));
  await t.write(Buffer.from('1'), 0);
  await t.commit();
  w.symlink({ path: 'ro/l', kind: 'symlink', size: 0, mode: 0o777, mtimeNs: MTIME, target: 'f' });
  assert.deepEqual(await w.finish(), []);
  assert.deepEqual((await fsp.readdir(path.join(dst, 'ro'))).sort(), ['f', 'l', 'not-ours.part']);
  const st = await fsp.stat(path.join(dst, 'ro'), { bigint: true });
  assert.equal(Number(st.mode & 0o777n), 0o555);
  assert.ok(mtimesEqual(st.mtimeNs, MTIME));
  const lst = await fsp.lstat(path.join(dst, 'ro/l'), { bigint: true });
  assert.ok(mtimesEqual(lst.mtimeNs, MTIME));
});

test('time precision of the fallback: what round-trips through libuv utimes is the microsecond', async () => {
  const d = await tmpDir();
  const f = path.join(d, 'f');
  await fsp.writeFile(f, '');
  for (const ns of [1_700_000_000_123_456_789n, 1_700_000_000_999_999_999n, 946_684_800_000_000_001n]) {
    await fsp.utimes(f, nsToSeconds(ns), nsToSeconds(ns));
    const got = (await fsp.stat(f, { bigint: true })).mtimeNs;
    assert.equal(got, ns - (ns % 1000n), `${ns} -> ${got}`);
  }
});

test('storedMtimeNs predicts exactly what utimes stores', async () => {
  const d = await tmpDir();
  const f = path.join(d, 'f');
  await fsp.writeFile(f, '');
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 300; i++) {
    const ns = BigInt(Math.floor(rnd() * 2e9)) * 1_000_000_000n + BigInt(Math.floor(rnd() * 1e9));
    await fsp.utimes(f, nsToSeconds(ns), nsToSeconds(ns));
    assert.equal((await fsp.stat(f, { bigint: true })).mtimeNs, storedMtimeNs(ns), String(ns));
  }
  assert.equal(mtimesEqual(1n, 2n), false);
  // With the native addon times are exact; the fallback accepts what utimes stores.
  assert.equal(mtimesEqual(1_700_000_000_123_456_789n, 1_700_000_000_123_456_000n), !nanosecondTimes());
  assert.equal(mtimesEqual(1_700_000_000_123_456_789n, 1_700_000_000_123_457_000n), false);
});

test('write-behind (network receiver): a large file written in chunks is byte-exact, its writeback started as it grows, and only where asked', async () => {
  const dst = path.join(await tmpDir(), 'dst');
  const chunk = 1024 * 1024;
  const size = 3 * WRITE_BEHIND_BYTES + 12345; // not a whole number of chunks
  const data = randomBytes(size);
  const copyWith = async (writeBehind: boolean, name: string): Promise<{ calls: number; bytes: number }> => {
    const w = await SafeWriter.open(dst, { writeBehind });
    const before = { ...writeBehindCounts };
    const t = await w.beginFile(fe(name, size));
    for (let off = 0; off < size; off += chunk) await t.write(data.subarray(off, Math.min(size, off + chunk)), off);
    await t.commit();
    await w.finish();
    w.close();
    assert.deepEqual(await fsp.readFile(path.join(dst, name)), data, `${name}: content`);
    return { calls: writeBehindCounts.calls - before.calls, bytes: writeBehindCounts.bytes - before.bytes };
  };
  const on = await copyWith(true, 'on.bin');
  const off = await copyWith(false, 'off.bin');
  assert.deepEqual(off, { calls: 0, bytes: 0 }, 'no writeback is started unless the writer asks for it');
  if (!writeBehindAvailable()) {
    assert.deepEqual(on, { calls: 0, bytes: 0 }, 'without the addon write-behind is a no-op');
    return;
  }
  // One call per WRITE_BEHIND_BYTES written while the previous one is done (at least one while
  // writing), then the tail at commit; together they cover the whole file.
  assert.ok(on.calls >= 2, `writeback started ${on.calls} times`);
  assert.ok(on.bytes >= WRITE_BEHIND_BYTES && on.bytes <= size, `writeback covered ${on.bytes} of ${size} bytes before the tail`);
});
