// fs/batch-copy (native/fs-batch.c): the native small-file copier gives the TypeScript
// path's results, refuses a source that is not the walked inode (CVE-2024-12747's
// class: a parent swapped for a symlink, a FIFO swapped in), and never leaves a temp
// file or a partial file under a final name. Under FERRY_NATIVE=0 the native cases
// skip (the fallback is what the rest of the suite tests).
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants as C, openSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { SourceEntry } from '../src/core/entry.js';
import { ErrorCodes, FerryError } from '../src/core/errors.js';
import { BatchCopier, nativeCopyAvailable, openFilesLimit } from '../src/fs/batch-copy.js';
import { tempNameFor } from '../src/fs/temp-names.js';
import { runCopy } from '../src/modes/copy.js';
import { FERRY_MAIN, cleanupTmpDirs, compareTrees, makeTree, tmpDir } from './support/tree.js';
import { isCI } from './support/tools.js';

after(cleanupTmpDirs);

function needNative(t: TestContext): boolean {
  if (nativeCopyAvailable()) return true;
  if (process.env.FERRY_NATIVE === '0') {
    t.skip('FERRY_NATIVE=0: the native copier is off on purpose');
    return false;
  }
  if (isCI()) throw new Error('the native addon is not built; CI=true forbids skipping');
  t.skip('the native addon is not built (node scripts/build-native.mjs)');
  return false;
}

async function entryOf(root: string, rel: string): Promise<SourceEntry> {
  const absPath = path.join(root, rel);
  const st = await fsp.lstat(absPath, { bigint: true });
  return {
    path: rel, kind: 'file', size: Number(st.size), mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs,
    absPath, ino: st.ino, dev: st.dev, nlink: Number(st.nlink), allocated: Number(st.blocks) * 512,
  };
}

/** An open descriptor of `dir` (the SafeWriter's role), closed after the file's tests. */
const opened: number[] = [];
after(() => opened.forEach((fd) => closeSync(fd)));
function dirFd(dir: string): number {
  const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  opened.push(fd);
  return fd;
}

async function names(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).sort();
}

test('native copy: same tree as the TypeScript path, mtimes exact to the nanosecond', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: Record<string, { type: 'file'; content: Buffer; mode: number; mtime: bigint }> = {};
  for (let i = 0; i < 300; i++) {
    spec[`d${i % 7}/f${i}`] = { type: 'file', content: Buffer.alloc(i * 97, i), mode: i % 3 === 0 ? 0o600 : 0o644, mtime: 1_600_000_000_123_456_789n + BigInt(i) };
  }
  await makeTree(src, spec);
  const r = await runCopy({ src: `${src}/`, dst: path.join(base, 'native') });
  assert.equal(r.counters.failed, 0);
  assert.equal(r.counters.copied, 300);
  const prev = process.env.FERRY_NATIVE;
  process.env.FERRY_NATIVE = '0';
  try {
    // The loader caches its decision: the fallback is forced through the option instead.
    const r2 = await runCopy({ src: `${src}/`, dst: path.join(base, 'js'), readWrite: true });
    assert.equal(r2.counters.failed, 0);
  } finally {
    if (prev === undefined) delete process.env.FERRY_NATIVE;
    else process.env.FERRY_NATIVE = prev;
  }
  assert.deepEqual(await compareTrees(src, path.join(base, 'native')), []);
  assert.deepEqual(await compareTrees(path.join(base, 'native'), path.join(base, 'js')), []);
  for (const rel of ['d0/f0', 'd3/f10', 'd5/f299']) {
    const a = await fsp.lstat(path.join(src, rel), { bigint: true });
    const b = await fsp.lstat(path.join(base, 'native', rel), { bigint: true });
    assert.equal(b.mtimeNs, a.mtimeNs, `${rel}: nanoseconds kept`);
  }
});

test('CVE-2024-12747 class, native copy: a parent swapped for a symlink after the walk is refused, nothing published', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/sub/secret.txt': 'planted!', 'outside/secret.txt': 'SHADOW!!', dst: { type: 'dir' } });
  // Same name, size and mtime (whole seconds, so exactly equal) outside; then the parent becomes a symlink to it.
  await fsp.utimes(path.join(base, 'src/sub/secret.txt'), 1_600_000_000, 1_600_000_000);
  await fsp.utimes(path.join(base, 'outside/secret.txt'), 1_600_000_000, 1_600_000_000);
  const e = await entryOf(path.join(base, 'src'), 'sub/secret.txt');
  await fsp.rename(path.join(base, 'src/sub'), path.join(base, 'src/sub.old'));
  await fsp.symlink(path.join(base, 'outside'), path.join(base, 'src/sub'));
  const c = new BatchCopier();
  const dst = path.join(base, 'dst');
  await assert.rejects(c.copy({ entry: e, dirFd: dirFd(dst), temp: tempNameFor('secret.txt'), name: 'secret.txt', mode: 0o644 }), (err: FerryError) => {
    assert.equal(err.code, ErrorCodes.CHANGED);
    assert.equal(err.subject, 'sub/secret.txt');
    return true;
  });
  assert.deepEqual(await names(dst), []);
});

test('native copy: a FIFO swapped in for a file does not block and is refused', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/f': 'data', dst: { type: 'dir' } });
  const e = await entryOf(path.join(base, 'src'), 'f');
  await fsp.unlink(e.absPath);
  execFileSync('mkfifo', [e.absPath]);
  const c = new BatchCopier();
  await assert.rejects(c.copy({ entry: e, dirFd: dirFd(path.join(base, 'dst')), temp: tempNameFor('f'), name: 'f', mode: 0o644 }), { code: ErrorCodes.CHANGED });
  assert.deepEqual(await names(path.join(base, 'dst')), []);
});

test('native copy: a file that grows after the walk is not published (size checked on the open file)', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/f': 'data', dst: { type: 'dir' } });
  const e = await entryOf(path.join(base, 'src'), 'f');
  await fsp.appendFile(e.absPath, 'more');
  const c = new BatchCopier();
  await assert.rejects(c.copy({ entry: e, dirFd: dirFd(path.join(base, 'dst')), temp: tempNameFor('f'), name: 'f', mode: 0o644 }), { code: ErrorCodes.CHANGED });
  assert.deepEqual(await names(path.join(base, 'dst')), []);
});

test('native copy: a failed publish (final name is a non-empty directory) leaves no temp file; a leftover temp is taken over', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/a': 'aaaa', 'src/b': 'bbbb', 'dst/a/x': 'in the way' });
  const dst = path.join(base, 'dst');
  // An interrupted run's temp file for b, with other content.
  await fsp.writeFile(path.join(dst, tempNameFor('b')), 'stale stale stale');
  const c = new BatchCopier();
  const ea = await entryOf(path.join(base, 'src'), 'a');
  const eb = await entryOf(path.join(base, 'src'), 'b');
  const [ra, rb] = await Promise.allSettled([
    c.copy({ entry: ea, dirFd: dirFd(dst), temp: tempNameFor('a'), name: 'a', mode: 0o640 }),
    c.copy({ entry: eb, dirFd: dirFd(dst), temp: tempNameFor('b'), name: 'b', mode: 0o640 }),
  ]);
  assert.equal(ra.status, 'rejected');
  assert.equal((ra as PromiseRejectedResult).reason.code, ErrorCodes.WRITE);
  assert.equal(rb.status, 'fulfilled');
  assert.deepEqual(await names(dst), ['a', 'b']);
  assert.equal(await fsp.readFile(path.join(dst, 'b'), 'utf8'), 'bbbb');
  assert.equal((await fsp.stat(path.join(dst, 'b'))).mode & 0o7777, 0o640);
});

test('native copy, new-file path (nameless file linked in): a name that appeared after the quick check is replaced atomically, a directory there is refused and nothing is left', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/a': 'aaaa', 'src/b': 'bbbb', 'src/c': 'cccc', 'dst/a': 'old file', 'dst/b/x': 'in the way' });
  const dst = path.join(base, 'dst');
  const c = new BatchCopier();
  const [ea, eb, ec] = await Promise.all(['a', 'b', 'c'].map((n) => entryOf(path.join(base, 'src'), n)));
  const [ra, rb, rc] = await Promise.allSettled([
    c.copy({ entry: ea!, dir: dst, temp: tempNameFor('a'), name: 'a', mode: 0o600, fresh: true }),
    c.copy({ entry: eb!, dir: dst, temp: tempNameFor('b'), name: 'b', mode: 0o600, fresh: true }),
    c.copy({ entry: ec!, dir: dst, temp: tempNameFor('c'), name: 'c', mode: 0o600, fresh: true }),
  ]);
  c.close();
  assert.equal(ra.status, 'fulfilled');
  assert.equal(rb.status, 'rejected');
  assert.equal((rb as PromiseRejectedResult).reason.code, ErrorCodes.WRITE);
  assert.equal(rc.status, 'fulfilled');
  assert.deepEqual(await names(dst), ['a', 'b', 'c']);
  assert.equal(await fsp.readFile(path.join(dst, 'a'), 'utf8'), 'aaaa');
  assert.equal(await fsp.readFile(path.join(dst, 'c'), 'utf8'), 'cccc');
  assert.equal((await fsp.stat(path.join(dst, 'c'))).mode & 0o7777, 0o600);
  assert.equal((await fsp.stat(path.join(dst, 'c'))).nlink, 1);
  assert.deepEqual(await names(path.join(dst, 'b')), ['x']);
});

test('native copy: many files in many directories through few batches, every file exact (batches of mixed directories, directory fds reused and closed)', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const spec: Record<string, { type: 'file'; content: Buffer; mode: number; mtime: bigint } | { type: 'dir' }> = {};
  for (let i = 0; i < 1500; i++) spec[`src/d${i % 40}/f${i}`] = { type: 'file', content: Buffer.alloc(i % 5000, i), mode: 0o644, mtime: 1_700_000_000_000_000_001n + BigInt(i) * 1_000_003n };
  for (let d = 0; d < 40; d++) spec[`dst/d${d}`] = { type: 'dir' };
  await makeTree(base, spec);
  const c = new BatchCopier();
  await Promise.all(
    Array.from({ length: 1500 }, async (_, i) => {
      const rel = `d${i % 40}/f${i}`;
      const e = await entryOf(path.join(base, 'src'), rel);
      await c.copy({ entry: e, dir: path.join(base, 'dst', `d${i % 40}`), temp: tempNameFor(`f${i}`), name: `f${i}`, mode: 0o644, fresh: i % 2 === 0 });
    }),
  );
  c.close();
  // Directory mtimes are the writer's business (set in finish()), not the copier's.
  const diffs = await compareTrees(path.join(base, 'src'), path.join(base, 'dst'));
  assert.deepEqual(diffs.filter((d) => !/^d\d+: mtime /.test(d)), []);
  for (const rel of ['d7/f7', 'd39/f1479']) {
    const a = await fsp.lstat(path.join(base, 'src', rel), { bigint: true });
    const b = await fsp.lstat(path.join(base, 'dst', rel), { bigint: true });
    assert.equal(b.mtimeNs, a.mtimeNs, `${rel}: mtime to the nanosecond`);
  }
});

test('openFilesLimit reads the soft limit from /proc/self/limits text: a number, unlimited, or 1024 when unreadable', () => {
  const text = (soft: string): string =>
    `Limit                     Soft Limit           Hard Limit           Units\nMax processes             95000                95000                processes\nMax open files            ${soft}                1048576              files\n`;
  assert.equal(openFilesLimit(text('20000')), 20000);
  assert.equal(openFilesLimit(text('unlimited')), Infinity);
  assert.equal(openFilesLimit(text('0')), 1024);
  assert.equal(openFilesLimit('Max processes 10 10 processes\n'), 1024);
  const live = openFilesLimit();
  assert.ok(Number.isFinite(live) ? live >= 16 : live === Infinity, `this process's limit: ${live}`);
});

test('native copy under a low limit on open files: thousands of files queued at once all arrive (batches hold at most half the limit in source descriptors)', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const n = 3000;
  const spec: Record<string, string | { type: 'dir' }> = { dst: { type: 'dir' } };
  for (let i = 0; i < n; i++) spec[`src/f${i}`] = `file ${i}\n`;
  await makeTree(base, spec);
  // A child with `ulimit -n 256` queues every file in one turn of its event loop, so each
  // running batch takes as many files as it may: with 256 per batch and several batches,
  // their sources alone would need far more descriptors than the limit (EMFILE).
  const child = path.join(base, 'child.mjs');
  const copier = new URL('../src/fs/batch-copy.js', import.meta.url).href;
  await fsp.writeFile(
    child,
    `import { lstatSync } from 'node:fs';
import { BatchCopier } from ${JSON.stringify(copier)};
const [src, dst, n] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const c = new BatchCopier();
const entries = [];
for (let i = 0; i < n; i++) {
  const absPath = src + '/f' + i;
  const st = lstatSync(absPath, { bigint: true });
  entries.push({ path: 'f' + i, kind: 'file', size: Number(st.size), mode: 0o644, mtimeNs: st.mtimeNs, absPath, ino: st.ino, dev: st.dev, nlink: 1, allocated: 0 });
}
const failed = [];
await Promise.all(entries.map((e) => c.copy({ entry: e, dir: dst, name: e.path, mode: 0o644, fresh: true }).catch((x) => failed.push(x.message))));
c.close();
console.log(JSON.stringify({ failed: failed.slice(0, 3), count: failed.length }));
`,
  );
  const r = spawnSync('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, child, path.join(base, 'src'), path.join(base, 'dst'), String(n)], { encoding: 'utf8', env: { ...process.env, UV_THREADPOOL_SIZE: '64' } });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim()) as { failed: string[]; count: number };
  assert.deepEqual(out, { failed: [], count: 0 });
  assert.deepEqual(await compareTrees(path.join(base, 'src'), path.join(base, 'dst'), { checkMtime: false }), []);
});

test('native copy: big files (one at a time, in their own slot) and small files queued together all arrive exact', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const big = Buffer.alloc(64 * 1024 * 1024 + 3);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
  await makeTree(base, { 'src/big1': big, 'src/big2': big.subarray(1), 'src/s1': 'one', 'src/s2': 'two', dst: { type: 'dir' } });
  const c = new BatchCopier();
  const dst = path.join(base, 'dst');
  await Promise.all(
    ['big1', 's1', 'big2', 's2'].map(async (n) => {
      const e = await entryOf(path.join(base, 'src'), n);
      await c.copy({ entry: e, dir: dst, temp: tempNameFor(n), name: n, mode: 0o644, fresh: true });
    }),
  );
  c.close();
  assert.deepEqual(await compareTrees(path.join(base, 'src'), dst, { checkMtime: false }), []);
  assert.ok((await fsp.readFile(path.join(dst, 'big2'))).equals(big.subarray(1)));
});

test('native copy, new file without a temp name: a name that appeared meanwhile is replaced atomically, a directory there is refused, nothing left', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  await makeTree(base, { 'src/a': 'aaaa', 'src/b': 'bbbb', 'src/c': 'cccc', 'dst/a': 'old file', 'dst/b/x': 'in the way' });
  const dst = path.join(base, 'dst');
  const c = new BatchCopier();
  const [ea, eb, ec] = await Promise.all(['a', 'b', 'c'].map((n) => entryOf(path.join(base, 'src'), n)));
  // No temp names: the copier names one only when the native side asks (here for a and b).
  const [ra, rb, rc] = await Promise.allSettled([
    c.copy({ entry: ea!, dir: dst, name: 'a', mode: 0o600, fresh: true }),
    c.copy({ entry: eb!, dir: dst, name: 'b', mode: 0o600, fresh: true }),
    c.copy({ entry: ec!, dir: dst, name: 'c', mode: 0o640, fresh: true }),
  ]);
  c.close();
  assert.equal(ra.status, 'fulfilled');
  assert.equal(rb.status, 'rejected');
  assert.equal((rb as PromiseRejectedResult).reason.code, ErrorCodes.WRITE);
  assert.equal(rc.status, 'fulfilled');
  assert.deepEqual(await names(dst), ['a', 'b', 'c']);
  assert.equal(await fsp.readFile(path.join(dst, 'a'), 'utf8'), 'aaaa');
  assert.equal((await fsp.stat(path.join(dst, 'a'))).mode & 0o7777, 0o600);
  assert.equal(await fsp.readFile(path.join(dst, 'c'), 'utf8'), 'cccc');
  assert.equal((await fsp.stat(path.join(dst, 'c'))).mode & 0o7777, 0o640);
  assert.deepEqual(await names(path.join(dst, 'b')), ['x']);
});

test('native copy: mtimes before 1970 and near the limits keep every nanosecond (floor division in the addon)', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const times = [-1_500_000_000_000_000_001n, -1n, -999_999_999n, -1_000_000_000n, 0n, 1n, 4_102_444_800_999_999_999n];
  const spec: Record<string, { type: 'file'; content: string; mtime: bigint } | { type: 'dir' }> = { dst: { type: 'dir' } };
  times.forEach((mt, i) => (spec[`src/f${i}`] = { type: 'file', content: `file ${i}`, mtime: mt }));
  await makeTree(base, spec);
  const c = new BatchCopier();
  const dst = path.join(base, 'dst');
  const entries = await Promise.all(times.map((_, i) => entryOf(path.join(base, 'src'), `f${i}`)));
  await Promise.all(entries.map((e, i) => c.copy({ entry: e, dir: dst, name: `f${i}`, mode: 0o644, fresh: i % 2 === 0 })));
  c.close();
  for (const [i, e] of entries.entries()) {
    const st = await fsp.lstat(path.join(dst, `f${i}`), { bigint: true });
    assert.equal(st.mtimeNs, e.mtimeNs, `f${i}: mtime ${e.mtimeNs}`);
  }
});

test('native copyFiles refuses a malformed batch: an empty temp name without the new-file flag, wrong array lengths', async (t) => {
  if (!needNative(t)) return;
  const { fsBatchAddon } = await import('../src/native/index.js');
  const a = fsBatchAddon()!;
  const strings = Buffer.from('/nonexistent\0\0name\0', 'utf8');
  // nums: size, mode, flags (0: not new), dirFd; ids: dev, ino, mtime.
  assert.throws(() => a.copyFiles(strings, Float64Array.of(1, 0o644, 0, 0), new BigUint64Array(3)), TypeError);
  assert.throws(() => a.copyFiles(strings, Float64Array.of(1, 0o644, 2, 0), new BigUint64Array(2)), RangeError);
  assert.throws(() => a.copyFiles(Buffer.from('/x\0t\0a/b\0'), Float64Array.of(1, 0o644, 2, 0), new BigUint64Array(3)), TypeError);
});

test('native copy, new files linked in by descriptor (AT_EMPTY_PATH) and through /proc/self/fd (where the kernel refuses the former): the same tree', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const spec: Record<string, { type: 'file'; content: string; mode: number; mtime: bigint }> = {};
  for (let i = 0; i < 40; i++) spec[`src/d${i % 3}/f${i}`] = { type: 'file', content: `file ${i} `.repeat(i), mode: 0o640, mtime: 1_700_000_000_000_000_007n + BigInt(i) };
  await makeTree(base, spec);
  const src = path.join(base, 'src');
  // Linux before 6.10 refuses AT_EMPTY_PATH without CAP_DAC_READ_SEARCH; FERRY_TEST_LINK_VIA_PROC
  // makes the addon take the /proc way from the start, as it then would.
  for (const [dst, viaProc] of [['by-fd', false], ['via-proc', true]] as const) {
    const env = { ...process.env, FERRY_TEST_LINK_VIA_PROC: viaProc ? '1' : '0' };
    execFileSync(process.execPath, [FERRY_MAIN, 'copy', '--progress=never', `${src}/`, path.join(base, dst)], { stdio: 'pipe', env });
    assert.deepEqual(await compareTrees(src, path.join(base, dst)), [], dst);
    assert.equal((await fsp.stat(path.join(base, dst, 'd1/f4'))).nlink, 1);
  }
});
