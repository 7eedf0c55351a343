/**
 * The receiver's small-file fast path (src/fs/small-files.ts):
 * published files are byte-exact with their mode and mtime, holes stay holes, a
 * failure leaves no temp file, a symlink at the final name is replaced and never
 * followed, a leftover temp file is taken over, and through a whole session a full
 * disk fails small files with FERRY_E_NOSPC and leaves nothing half-written (the
 * network ENOSPC test in net-errors covers the large-file path).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempNameFor } from '../src/fs/temp-names.js';
import { publishSmallFile, type SmallFileTarget } from '../src/fs/small-files.js';
import { runMemorySession } from './support/transfer-harness.js';
import { cleanupTmpDirs, makeTree, smallTmpfs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const MTIME = 1_700_000_000.25;
const MTIME_NS = 1_700_000_000_250_000_000n;

function target(dir: string, name: string, size: number, mode = 0o640): SmallFileTarget {
  return { dir, name, size, mode, mtimeNs: MTIME_NS };
}

test('files of several parts: exact bytes, mode, mtime; no temp file left', async () => {
  const dir = await tmpDir('ferry-sfw-');
  for (let i = 0; i < 50; i++) {
    const data = Buffer.alloc(3000 + i, i & 0xff);
    publishSmallFile(target(dir, `f${i}`, data.length), [{ offset: 0, data: data.subarray(0, 1000) }, { offset: 1000, data: data.subarray(1000) }]);
  }
  const names = await fsp.readdir(dir);
  assert.equal(names.length, 50);
  for (const i of [0, 1, 49]) {
    const p = path.join(dir, `f${i}`);
    assert.deepEqual(await fsp.readFile(p), Buffer.alloc(3000 + i, i & 0xff));
    const st = await fsp.stat(p);
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(Math.floor(st.mtimeMs), Math.floor(MTIME * 1000));
  }
});

test('gaps between parts and a trailing gap are holes of zeros, at the right size', async () => {
  const dir = await tmpDir('ferry-sfw-');
  publishSmallFile(target(dir, 'sparse', 100_000), [
    { offset: 0, data: Buffer.from('head') },
    { offset: 50_000, data: Buffer.from('middle') },
  ]);
  const got = await fsp.readFile(path.join(dir, 'sparse'));
  const want = Buffer.alloc(100_000);
  want.write('head', 0);
  want.write('middle', 50_000);
  assert.equal(got.length, 100_000);
  assert.ok(got.equals(want));
});

test('a file that cannot be published throws the system error and leaves no temp file', async () => {
  const dir = await tmpDir('ferry-sfw-');
  await fsp.mkdir(path.join(dir, 'taken'));
  await fsp.writeFile(path.join(dir, 'taken', 'x'), 'occupied');
  // The final name is a non-empty directory: rename(2) fails after the data was written.
  assert.throws(
    () => publishSmallFile(target(dir, 'taken', 4), [{ offset: 0, data: Buffer.from('data') }]),
    (e: NodeJS.ErrnoException) => e.code === 'EISDIR' || e.code === 'ENOTEMPTY' || e.code === 'EEXIST',
  );
  assert.throws(() => publishSmallFile(target(path.join(dir, 'missing'), 'b', 1), [{ offset: 0, data: Buffer.from('b') }]), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  assert.deepEqual((await fsp.readdir(dir)).sort(), ['taken']);
  assert.deepEqual(await fsp.readdir(path.join(dir, 'taken')), ['x']);
});

test('a symlink at the final name is replaced, never written through', async () => {
  const root = await tmpDir('ferry-sfw-');
  const dir = path.join(root, 'dst');
  const outside = path.join(root, 'outside.txt');
  await makeTree(root, { 'outside.txt': 'precious', 'dst/': { type: 'dir' } });
  await fsp.symlink(outside, path.join(dir, 'victim'));
  publishSmallFile(target(dir, 'victim', 5), [{ offset: 0, data: Buffer.from('hello') }]);
  assert.equal(await fsp.readFile(outside, 'utf8'), 'precious');
  const st = await fsp.lstat(path.join(dir, 'victim'));
  assert.ok(st.isFile());
  assert.equal(await fsp.readFile(path.join(dir, 'victim'), 'utf8'), 'hello');
});

test('an interrupted run\'s temp file is taken over (removed and recreated), not appended to', async () => {
  const dir = await tmpDir('ferry-sfw-');
  await fsp.writeFile(path.join(dir, tempNameFor('f')), 'stale stale stale stale');
  publishSmallFile(target(dir, 'f', 3), [{ offset: 0, data: Buffer.from('new') }]);
  assert.deepEqual(await fsp.readdir(dir), ['f']);
  assert.equal(await fsp.readFile(path.join(dir, 'f'), 'utf8'), 'new');
});

test('whole session onto a full disk: small files fail with FERRY_E_NOSPC, every published file is complete', async (t) => {
  const root = await tmpDir('ferry-sfw-full-');
  const src = path.join(root, 'src');
  const spec: Record<string, Buffer> = {};
  for (let i = 0; i < 40; i++) spec[`sub/f${String(i).padStart(2, '0')}.bin`] = Buffer.alloc(100 * 1024, i + 1);
  await makeTree(src, spec);
  const tmpfs = await smallTmpfs(t, root, '1m');
  if (!tmpfs) return;
  const mnt = tmpfs.dir;
  try {
    const r = await runMemorySession(`${src}/`, mnt);
    assert.ok(!(r.sender instanceof Error), String(r.sender));
    assert.ok(!(r.receiver instanceof Error), String(r.receiver));
    const failures = r.receiver.failures;
    assert.ok(failures.length >= 1, 'some files must fail on a 1 MiB disk');
    for (const f of failures) assert.equal(f.code, 'FERRY_E_NOSPC', f.message);
    assert.ok(r.receiver.summary.committed >= 1);
    assert.equal(r.receiver.summary.committed + r.receiver.summary.failed, 40);
    const names = await fsp.readdir(path.join(mnt, 'sub'));
    assert.equal(names.length, r.receiver.summary.committed);
    for (const name of names) {
      assert.ok(!name.startsWith('.ferry-'), `temp file left behind: ${name}`);
      const i = Number(name.slice(1, 3));
      assert.ok((await fsp.readFile(path.join(mnt, 'sub', name))).equals(Buffer.alloc(100 * 1024, i + 1)), name);
    }
  } finally {
    tmpfs.unmount();
  }
});
