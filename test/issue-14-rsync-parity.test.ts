// Issue #14, "Done when": ferry held against rsync itself. After `ferry copy` (as root,
// and as an unprivileged user) of a tree with nanosecond mtimes, other owners, xattrs,
// a sparse file, hard links and odd names, `rsync -aiHX --dry-run SRC/ COPY/` itemizes
// nothing, and every entry's mtime is identical to the nanosecond; the same after a
// network transfer (ferry send / ferry recv over loopback).
//
// Nanoseconds and xattrs need the native data plane: under FERRY_NATIVE=0 the copy
// keeps microseconds and refuses -X (both documented), so this file checks that
// refusal there and skips the comparison, saying why.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { nanosecondTimes, setXattr, xattrsAvailable } from '../src/fs/meta-native.js';
import { startRecv, sendTo } from './support/net-harness.js';
import { startSshd } from './support/sshd.js';
import { requireTool, requireTools } from './support/tools.js';
import { FERRY_BIN, cleanupTmpDirs, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NS = 1_000_000_000n;
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;

function touchNs(p: string, ns: bigint): void {
  execFileSync('touch', ['-h', '-d', `@${ns / NS}.${(ns % NS).toString().padStart(9, '0')}`, p]);
}

/** Odd names rsync and cp must both get right. */
const ODD = ['-dash', 'new\nline', 'tab\there', 'ü spaces & é', 'back\\slash', '*star?', ' lead', 'trail '];

/**
 * The tree. `owners`: some files belong to other users and groups (root only).
 * Every entry gets a time with nine significant digits, directories last.
 */
async function buildTree(src: string, opts: { owners: boolean }): Promise<void> {
  await fsp.mkdir(path.join(src, 'd/e/f'), { recursive: true });
  await fsp.mkdir(path.join(src, 'empty'));
  for (const [i, n] of ODD.entries()) await fsp.writeFile(path.join(src, n), `odd ${i}\n`);
  await fsp.writeFile(path.join(src, 'd/e/f/deep.txt'), 'deep');
  await fsp.writeFile(path.join(src, 'big.bin'), Buffer.alloc(700_000, 0x5a));
  await fsp.writeFile(path.join(src, 'exec.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await fsp.writeFile(path.join(src, 'private'), 'p', { mode: 0o600 });
  // Sparse: 1 MiB + 4 KiB with 4 KiB of data in the middle.
  const fh = await fsp.open(path.join(src, 'sparse.img'), 'w');
  await fh.write(Buffer.alloc(4096, 0x11), 0, 4096, 512 * 1024);
  await fh.truncate(1024 * 1024 + 4096);
  await fh.close();
  await fsp.link(path.join(src, 'big.bin'), path.join(src, 'd/hard-big'));
  await fsp.link(path.join(src, '-dash'), path.join(src, 'd/e/hard-dash'));
  await fsp.symlink('../big.bin', path.join(src, 'd/link'));
  await fsp.symlink('nowhere', path.join(src, 'dangling'));
  if (opts.owners) {
    execFileSync('chown', ['1234:2345', path.join(src, 'big.bin')]);
    execFileSync('chown', ['4321', path.join(src, 'private')]);
    execFileSync('chown', ['-h', '2222:3333', path.join(src, 'd/link')]);
    execFileSync('chown', ['5555:6666', path.join(src, 'd/e')]);
  }
  if (xattrsAvailable()) {
    setXattr(path.join(src, 'big.bin'), 'user.origin', Buffer.from('https://example.org/big'), false);
    setXattr(path.join(src, 'big.bin'), 'user.empty', Buffer.alloc(0), false);
    setXattr(path.join(src, 'd'), 'user.dir', Buffer.from([0, 1, 2, 255]), false);
    setXattr(path.join(src, ODD[1]!), 'user.odd', Buffer.from('newline file'), false);
    if (isRoot) setXattr(path.join(src, 'exec.sh'), 'trusted.ferry', Buffer.from('root only'), false);
  }
  let t = 1_600_000_000n * NS + 123_456_789n;
  const order = [...ODD, 'd/e/f/deep.txt', 'big.bin', 'exec.sh', 'private', 'sparse.img', 'd/link', 'dangling', 'd/e/f', 'd/e', 'd', 'empty', '.'];
  for (const rel of order) {
    t += 3_000_000_001n;
    touchNs(path.join(src, rel), t);
  }
}

/** rsync's itemized differences of SRC/ onto DST/ (empty: nothing to do). */
function rsyncItemize(src: string, dst: string, who: { uid?: number; gid?: number }): string {
  const r = spawnSync('rsync', ['-aiHX', '--dry-run', `${src}/`, `${dst}/`], { encoding: 'utf8', ...who });
  assert.equal(r.status, 0, `rsync: ${r.stderr}`);
  return r.stdout;
}

async function allMtimes(root: string): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  const walk = async (rel: string): Promise<void> => {
    const st = await fsp.lstat(path.join(root, rel), { bigint: true });
    out.set(rel, st.mtimeNs);
    if (st.isDirectory()) for (const n of (await fsp.readdir(path.join(root, rel))).sort()) await walk(rel === '' ? n : `${rel}/${n}`);
  };
  await walk('');
  return out;
}

async function assertSameTimes(src: string, dst: string): Promise<void> {
  const a = await allMtimes(src);
  const b = await allMtimes(dst);
  assert.deepEqual([...b.keys()], [...a.keys()], 'the same entries');
  for (const [rel, ns] of a) assert.equal(b.get(rel), ns, `mtime of ${JSON.stringify(rel || '.')}`);
}

async function allocatedKiB(p: string): Promise<number> {
  return Number((await fsp.stat(p, { bigint: true })).blocks) / 2;
}

function skipWithoutNative(t: TestContext): boolean {
  if (nanosecondTimes() && xattrsAvailable()) return false;
  t.skip('nanosecond times and xattrs need the native data plane (FERRY_NATIVE=0 keeps µs and refuses -X: checked below)');
  return true;
}

test('rsync parity (root): ferry copy -a -X, then rsync -aiHX --dry-run itemizes nothing and every mtime is identical', async (t) => {
  if (!requireTool(t, 'rsync') || skipWithoutNative(t)) return;
  if (!isRoot) {
    t.skip('needs root (owners of other users); CI runs as root');
    return;
  }
  const base = await tmpDir('ferry-parity-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'copy');
  await buildTree(src, { owners: true });
  const r = await runFerry(['copy', '-a', '-X', `${src}/`, dst]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(rsyncItemize(src, dst, {}), '');
  await assertSameTimes(src, dst);
  assert.ok((await allocatedKiB(path.join(dst, 'sparse.img'))) <= 8, 'the sparse file stays sparse (4 KiB of data)');
});

test('rsync parity (unprivileged user): the same as nobody, owners untouched', async (t) => {
  if (!requireTool(t, 'rsync') || skipWithoutNative(t)) return;
  const base = await tmpDir('ferry-parity-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'copy');
  await buildTree(src, { owners: false });
  let who: { uid?: number; gid?: number } = {};
  if (isRoot) {
    await fsp.chmod(base, 0o755);
    execFileSync('chown', ['-R', '-h', `${NOBODY}:${NOBODY}`, base]);
    who = { uid: NOBODY, gid: NOBODY };
  }
  const r = await runFerry(['copy', '-a', '-X', `${src}/`, dst], who);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(rsyncItemize(src, dst, who), '');
  await assertSameTimes(src, dst);
  const st = await fsp.stat(path.join(dst, 'big.bin'));
  assert.equal(st.uid, isRoot ? NOBODY : process.geteuid!(), 'files belong to the user who copied');
});

test('rsync parity over the network: ferry send -X to ferry recv (as root: owners kept by number)', async (t) => {
  if (!requireTool(t, 'rsync') || skipWithoutNative(t)) return;
  const base = await tmpDir('ferry-parity-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'copy');
  await buildTree(src, { owners: isRoot });
  // Both ends must ask for owners and attributes (the receiver trusts no peer's ids by default).
  const meta = ['-X', ...(isRoot ? ['-o', '-g'] : [])];
  const recv = await startRecv(dst, meta);
  const s = await sendTo(`${src}/`, recv.port, meta).done;
  if (s.code !== 0) recv.child.kill();
  const rr = await recv.done;
  assert.equal(s.code, 0, s.stderr);
  assert.equal(rr.code, 0, rr.stderr);
  // The receiver does not take the root directory's own metadata (it may be anyone's DST).
  touchNs(dst, (await fsp.lstat(src, { bigint: true })).mtimeNs);
  await fsp.chmod(dst, (await fsp.stat(src)).mode & 0o7777);
  assert.equal(rsyncItemize(src, dst, {}), '');
  await assertSameTimes(src, dst);
  assert.ok((await allocatedKiB(path.join(dst, 'sparse.img'))) <= 8, 'the sparse file stays sparse after send/recv');
});

test('rsync parity over ssh: ferry -X -o -g SRC/ host:DST (push) and host:SRC/ DST (pull)', { timeout: 300_000 }, async (t) => {
  if (!requireTools(t, 'rsync', 'sshd', 'ssh', 'ssh-keygen') || skipWithoutNative(t)) return;
  const base = await tmpDir('ferry-parity-');
  const src = path.join(base, 'src');
  await buildTree(src, { owners: isRoot });
  const sshd = await startSshd();
  try {
    const meta = ['-X', ...(isRoot ? ['-o', '-g'] : [])];
    const ferry = (args: string[]): ReturnType<typeof runFerry> =>
      runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', ...meta, ...args], { timeoutMs: 120_000 });
    const pushed = path.join(base, 'pushed');
    const r = await ferry([`${src}/`, `127.0.0.1:${pushed}`]);
    assert.equal(r.code, 0, r.stderr);
    const pulled = path.join(base, 'pulled');
    const q = await ferry([`127.0.0.1:${src}/`, pulled]);
    assert.equal(q.code, 0, q.stderr);
    for (const dst of [pushed, pulled]) {
      touchNs(dst, (await fsp.lstat(src, { bigint: true })).mtimeNs);
      await fsp.chmod(dst, (await fsp.stat(src)).mode & 0o7777);
      assert.equal(rsyncItemize(src, dst, {}), '', dst);
      await assertSameTimes(src, dst);
    }
  } finally {
    await sshd.stop();
  }
});

test('without the native data plane, -X is refused with FERRY_E_UNSUPPORTED (documented difference)', async (t) => {
  if (xattrsAvailable()) {
    t.skip('the native data plane is in use: -X works (the FERRY_NATIVE=0 pass checks the refusal)');
    return;
  }
  const base = await tmpDir('ferry-parity-');
  await fsp.mkdir(path.join(base, 'src'));
  await fsp.writeFile(path.join(base, 'src/f'), 'f');
  const r = await runFerry(['copy', '-X', `${base}/src/`, path.join(base, 'dst')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /FERRY_E_UNSUPPORTED: .*xattrs need the native data plane/);
  await assert.rejects(fsp.access(path.join(base, 'dst/f')), 'nothing copied');
});
