// Issue #14, "Wrong results": metadata as cp -a and rsync -a keep it. Nanosecond times
// on every kind of entry, locally (batched native copier and the TempFile path) and over
// the network; a quick check exact to the nanosecond; a mode-only or mtime-only change
// mended in place without copying the data.
// Under FERRY_NATIVE=0 times are libuv's microseconds (documented): the tests then
// check exactly what that fallback promises.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { nanosecondTimes, storedMtimeNs } from '../src/fs/meta-native.js';
import { runCopy } from '../src/modes/copy.js';
import { runMemorySession } from './support/transfer-harness.js';
import { cleanupTmpDirs, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NS = 1_000_000_000n;

/** Set an entry's atime and mtime to `ns` with all nine digits (coreutils touch; -h: the link itself). */
function touchNs(p: string, ns: bigint): void {
  const sec = ns / NS;
  const frac = (ns % NS).toString().padStart(9, '0');
  execFileSync('touch', ['-h', '-d', `@${sec}.${frac}`, p]);
}

/** What a copy must hold for a source time `ns`: all of it natively, libuv's µs in the fallback. */
function expected(ns: bigint): bigint {
  return nanosecondTimes() ? ns : storedMtimeNs(ns);
}

async function mtimeOf(p: string): Promise<bigint> {
  return (await fsp.lstat(p, { bigint: true })).mtimeNs;
}

/** A tree whose every entry has a time with nine significant digits. */
async function nsTree(): Promise<{ src: string; times: Map<string, bigint> }> {
  const base = await tmpDir('ferry-i14-');
  const src = path.join(base, 'src');
  await makeTree(src, {
    'small.txt': 'small',
    'big.bin': Buffer.alloc(600_000, 3),
    'sparse.img': { type: 'sparse', size: 2 * 1024 * 1024, data: [{ offset: 1024 * 1024, content: 'x' }] },
    'd/inner.txt': 'inner',
    'd/e/': { type: 'dir' },
    'link': { type: 'symlink', target: 'small.txt' },
    'd/dangling': { type: 'symlink', target: 'nowhere' },
  });
  const times = new Map<string, bigint>();
  let t = 1_700_000_000n * NS + 123_456_789n;
  // Files and links first, then directories deepest first, then the root.
  for (const rel of ['small.txt', 'big.bin', 'sparse.img', 'd/inner.txt', 'link', 'd/dangling', 'd/e', 'd', '']) {
    t += 1_000_000_007n;
    touchNs(path.join(src, rel), t);
    times.set(rel, t);
  }
  return { src, times };
}

async function assertTimes(dst: string, times: Map<string, bigint>): Promise<void> {
  for (const [rel, ns] of times) {
    assert.equal(await mtimeOf(path.join(dst, rel)), expected(ns), `mtime of ${rel || '.'}`);
  }
}

test('nanosecond mtimes: ferry copy keeps all nine digits on files, directories, symlinks and DST itself', async () => {
  const { src, times } = await nsTree();
  for (const extra of [[], ['--no-splice']]) {
    // --no-splice takes the TempFile path for every file (not the batched native copier).
    const dst = path.join(await tmpDir('ferry-i14-dst-'), 'copy');
    const r = await runFerry(['copy', `${src}/`, dst, ...extra]);
    assert.equal(r.code, 0, r.stderr);
    await assertTimes(dst, times);
  }
});

test('nanosecond mtimes: send/recv keeps all nine digits (small-file path, TempFile path, symlinks, directories)', async () => {
  const { src, times } = await nsTree();
  const dst = await tmpDir('ferry-i14-net-');
  const r = await runMemorySession(`${src}/`, dst, { chunkSize: 64 * 1024 });
  assert.ok(!(r.sender instanceof Error), String(r.sender));
  assert.ok(!(r.receiver instanceof Error), String(r.receiver));
  times.delete(''); // the network receiver does not take the root's metadata
  await assertTimes(dst, times);
});

test('quick check is exact to the nanosecond: a copy 1 ns off is mended, not skipped', async (t) => {
  if (!nanosecondTimes()) {
    t.skip('without the native addon times are microseconds (documented fallback)');
    return;
  }
  const base = await tmpDir('ferry-i14-');
  const src = path.join(base, 'src');
  await makeTree(src, { 'f.txt': 'content' });
  const ns = 1_700_000_000n * NS + 123_456_789n;
  touchNs(path.join(src, 'f.txt'), ns);
  const dst = path.join(base, 'dst');
  assert.equal((await runFerry(['copy', `${src}/`, dst])).code, 0);
  touchNs(path.join(dst, 'f.txt'), ns + 1n);
  const r = await runCopy({ src: `${src}/`, dst });
  assert.equal(r.counters.skipped, 0, 'a 1 ns difference is a difference');
  assert.equal(await mtimeOf(path.join(dst, 'f.txt')), ns);
  const again = await runCopy({ src: `${src}/`, dst });
  assert.equal(again.counters.skipped, 1);
  assert.equal(again.counters.copied + again.counters.metaFixed, 0);
});

async function inodeOf(p: string): Promise<bigint> {
  return (await fsp.lstat(p, { bigint: true })).ino;
}

test('a mode-only change is mended in place: same inode, no data read or written', async () => {
  const base = await tmpDir('ferry-i14-');
  const src = path.join(base, 'src');
  await makeTree(src, { 'f.bin': Buffer.alloc(200_000, 9), 'g.txt': { type: 'file', content: 'g', mode: 0o644 } });
  const dst = path.join(base, 'dst');
  assert.equal((await runCopy({ src: `${src}/`, dst })).counters.failed, 0);
  const ino = await inodeOf(path.join(dst, 'f.bin'));
  const inoG = await inodeOf(path.join(dst, 'g.txt'));
  await fsp.chmod(path.join(src, 'f.bin'), 0o600);
  await fsp.chmod(path.join(src, 'g.txt'), 0o000); // unreadable to its owner: mended through an O_PATH descriptor
  let opened = 0;
  const r = await runCopy({ src: `${src}/`, dst, hooks: { beforeOpen: () => void opened++ } });
  assert.deepEqual(r.errors, []);
  assert.equal(opened, 0, 'no source file was opened');
  assert.equal(r.counters.bytesCopied, 0);
  assert.equal(r.counters.copied, 0);
  assert.equal(r.counters.metaFixed, 2);
  assert.equal(await inodeOf(path.join(dst, 'f.bin')), ino, 'f.bin kept its inode');
  assert.equal(await inodeOf(path.join(dst, 'g.txt')), inoG, 'g.txt kept its inode');
  assert.equal((await fsp.stat(path.join(dst, 'f.bin'))).mode & 0o7777, 0o600);
  assert.equal((await fsp.stat(path.join(dst, 'g.txt'))).mode & 0o7777, 0o000);
  await fsp.chmod(path.join(src, 'g.txt'), 0o644);
  await fsp.chmod(path.join(dst, 'g.txt'), 0o644);
});

test('an mtime-only change with the same content is mended in place: same inode, nothing written', async () => {
  const base = await tmpDir('ferry-i14-');
  const src = path.join(base, 'src');
  await makeTree(src, { 'f.bin': Buffer.alloc(300_000, 5), 'changed.bin': Buffer.alloc(1000, 1) });
  const dst = path.join(base, 'dst');
  assert.equal((await runCopy({ src: `${src}/`, dst })).counters.failed, 0);
  const ino = await inodeOf(path.join(dst, 'f.bin'));
  const ns = 1_650_000_000n * NS + 987_654_321n;
  touchNs(path.join(src, 'f.bin'), ns);
  // Same size, other bytes, other mtime: this one must be copied.
  await fsp.writeFile(path.join(src, 'changed.bin'), Buffer.alloc(1000, 2));
  const r = await runCopy({ src: `${src}/`, dst });
  assert.deepEqual(r.errors, []);
  assert.equal(r.counters.metaFixed, 1);
  assert.equal(r.counters.copied, 1);
  assert.equal(r.counters.bytesCopied, 1000, 'only the changed file was copied');
  assert.equal(await inodeOf(path.join(dst, 'f.bin')), ino);
  assert.equal(await mtimeOf(path.join(dst, 'f.bin')), expected(ns));
  assert.deepEqual(await fsp.readFile(path.join(dst, 'changed.bin')), Buffer.alloc(1000, 2));
  // And over the network: a mode-only change is mended, with --checksum an mtime-only one too.
  const ndst = await tmpDir('ferry-i14-net-');
  await runMemorySession(`${src}/`, ndst);
  const nino = await inodeOf(path.join(ndst, 'f.bin'));
  await fsp.chmod(path.join(src, 'f.bin'), 0o640);
  touchNs(path.join(src, 'f.bin'), ns + 5n);
  const n = await runMemorySession(`${src}/`, ndst, { checksum: true });
  assert.ok(!(n.sender instanceof Error), String(n.sender));
  assert.equal(n.sender.bytesSent, 0, 'no file data went over the wire');
  assert.equal(await inodeOf(path.join(ndst, 'f.bin')), nino);
  assert.equal((await fsp.stat(path.join(ndst, 'f.bin'))).mode & 0o7777, 0o640);
  assert.equal(await mtimeOf(path.join(ndst, 'f.bin')), expected(ns + 5n));
});

async function allocatedKiB(p: string): Promise<number> {
  return Number((await fsp.stat(p, { bigint: true })).blocks) / 2;
}

/** 1 MiB + 4 KiB with 4 KiB of data in the middle; `unaligned`: data not on a chunk or block boundary. */
async function sparseFile(p: string, dataAt: number): Promise<Buffer> {
  const fh = await fsp.open(p, 'w');
  const data = Buffer.alloc(4096, 0x42);
  await fh.write(data, 0, data.length, dataAt);
  await fh.truncate(1024 * 1024 + 4096);
  await fh.close();
  const all = Buffer.alloc(1024 * 1024 + 4096);
  data.copy(all, dataAt);
  return all;
}

test('sparse files stay exactly sparse: a 1 MiB file with 4 KiB of data allocates ~4 KiB after copy and after send/recv', async (t) => {
  const base = await tmpDir('ferry-i14-');
  const src = path.join(base, 'src');
  await fsp.mkdir(src);
  const content = await sparseFile(path.join(src, 'sparse.img'), 512 * 1024);
  if ((await allocatedKiB(path.join(src, 'sparse.img'))) > 8) {
    t.skip(`this filesystem (${base}) does not keep holes`);
    return;
  }
  const dst = path.join(base, 'dst');
  const r = await runCopy({ src: `${src}/`, dst });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(await fsp.readFile(path.join(dst, 'sparse.img')), content);
  assert.ok((await allocatedKiB(path.join(dst, 'sparse.img'))) <= 8, `local copy allocates ${await allocatedKiB(path.join(dst, 'sparse.img'))} KiB`);
  const ndst = await tmpDir('ferry-i14-net-');
  const n = await runMemorySession(`${src}/`, ndst, { chunkSize: 1024 * 1024 });
  assert.ok(!(n.sender instanceof Error), String(n.sender));
  assert.ok(!(n.receiver instanceof Error), String(n.receiver));
  assert.deepEqual(await fsp.readFile(path.join(ndst, 'sparse.img')), content);
  assert.ok((await allocatedKiB(path.join(ndst, 'sparse.img'))) <= 8, `send/recv allocates ${await allocatedKiB(path.join(ndst, 'sparse.img'))} KiB`);
  assert.ok(n.sender.bytesSent <= 8192, `sent ${n.sender.bytesSent} bytes of file data`);
});

test('fs/sparse: the data span and runs of a chunk, from extents and by zero blocks', async () => {
  const { dataRuns, dataSpan } = await import('../src/fs/sparse.js');
  const chunk = Buffer.alloc(64 * 1024);
  chunk.fill(1, 8192, 12288);
  chunk.fill(2, 40960, 45056);
  const pos = 1 << 20;
  // Zero blocks (the fallback): leading and trailing zero blocks trimmed; runs of non-zero blocks.
  assert.deepEqual(dataSpan(chunk, pos, null), { off: 8192, len: 45056 - 8192 });
  assert.deepEqual(dataRuns(chunk, pos, null), [[8192, 12288], [40960, 45056]]);
  assert.deepEqual(dataSpan(Buffer.alloc(10_000), pos, null), { off: 0, len: 0 });
  // Extents (SEEK_DATA): clipped to the chunk, whatever they contain.
  const ext: Array<[number, number]> = [[0, 100], [pos + 100, pos + 200], [pos + 60_000, pos + 70_000]];
  assert.deepEqual(dataSpan(chunk, pos, ext), { off: 100, len: 65536 - 100 });
  assert.deepEqual(dataRuns(chunk, pos, ext), [[100, 200], [60_000, 65536]]);
  assert.deepEqual(dataSpan(chunk, pos, [[0, pos]]), { off: 0, len: 0 });
});

test('a copy made with microsecond times (FERRY_NATIVE=0, or an older ferry) is upgraded in place: times mended, no data read', async (t) => {
  if (!nanosecondTimes()) {
    t.skip('only the native data plane sets nanoseconds');
    return;
  }
  const { src, times } = await nsTree();
  const dst = path.join(await tmpDir('ferry-i14-dst-'), 'copy');
  const r = await runFerry(['copy', `${src}/`, dst], { env: { FERRY_NATIVE: '0' } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await mtimeOf(path.join(dst, 'small.txt')), storedMtimeNs(times.get('small.txt')!));
  let opened = 0;
  const again = await runCopy({ src: `${src}/`, dst, hooks: { beforeOpen: () => void opened++ } });
  assert.deepEqual(again.errors, []);
  assert.equal(opened, 0, 'nothing was read or copied');
  assert.equal(again.counters.copied, 0);
  for (const [rel, ns] of times) assert.equal(await mtimeOf(path.join(dst, rel)), ns, `mtime of ${rel || '.'}`);
});
