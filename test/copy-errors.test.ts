// Error cases of `ferry copy` through the real CLI: each gives one line with a stable
// code and the documented exit status, the other files are still copied, and a
// failed file leaves no temp file behind.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { cleanupTmpDirs, isRoot, makeTree, runFerry, snapshotTree, tmpDir } from './support/tree.js';

const mounts: string[] = [];
after(async () => {
  for (const m of mounts) {
    try {
      execFileSync('umount', [m]);
    } catch {
      /* already gone */
    }
  }
  await cleanupTmpDirs();
});

const NOBODY = 65534;
const CI = process.env['CI'] === 'true';

async function temps(root: string): Promise<string[]> {
  return [...(await snapshotTree(root, { hash: false })).keys()].filter((p) => path.basename(p).startsWith('.ferry-'));
}

/** As root, permission errors need an unprivileged child: give it the tree. */
async function unprivileged(base: string): Promise<{ uid?: number; gid?: number }> {
  if (!isRoot()) return {};
  execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, base]);
  return { uid: NOBODY, gid: NOBODY };
}

test('FERRY_E_READ: an unreadable source file is reported; the others are copied', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, { 'a.txt': 'a', 'secret.bin': 'cannot read me', 'z/b.txt': 'b' });
  const who = await unprivileged(base);
  if (isRoot()) execFileSync('chown', ['0:0', path.join(src, 'secret.bin')]);
  await fsp.chmod(path.join(src, 'secret.bin'), 0o000);
  const dst = path.join(base, 'dst');
  const r = await runFerry(['copy', `${src}/`, dst, '--json'], who);
  assert.equal(r.code, 1, r.stderr);
  const errLines = r.stderr.split('\n').filter((l) => l.startsWith('ferry: FERRY_E_'));
  assert.equal(errLines.length, 1, r.stderr);
  assert.match(errLines[0]!, /^ferry: FERRY_E_READ: secret\.bin: cannot read: EACCES/);
  const j = JSON.parse(r.stdout) as { failed: number; copied: number; errors: Array<{ code: string; path: string }> };
  assert.equal(j.failed, 1);
  assert.equal(j.copied, 2);
  assert.deepEqual(j.errors.map((e) => [e.code, e.path]), [['FERRY_E_READ', 'secret.bin']]);
  assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'a');
  assert.equal(await fsp.readFile(path.join(dst, 'z/b.txt'), 'utf8'), 'b');
  await assert.rejects(fsp.access(path.join(dst, 'secret.bin')));
  assert.deepEqual(await temps(dst), []);
});

test('FERRY_E_READ: an unreadable source directory is reported and --delete is suspended', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, { 'ok.txt': 'ok', 'closed/inner.txt': 'x' });
  await makeTree(dst, { 'closed/inner.txt': 'x', 'extra.txt': 'would be deleted' });
  const who = await unprivileged(base);
  if (isRoot()) execFileSync('chown', ['0:0', path.join(src, 'closed')]);
  await fsp.chmod(path.join(src, 'closed'), 0o000);
  const r = await runFerry(['copy', `${src}/`, dst, '--delete'], who);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^ferry: FERRY_E_READ: closed: cannot read: EACCES/m);
  // The directory itself was listed by its parent and copied with its mode (000).
  assert.equal((await fsp.stat(path.join(dst, 'closed'))).mode & 0o777, 0);
  await fsp.chmod(path.join(dst, 'closed'), 0o755);
  assert.equal(await fsp.readFile(path.join(dst, 'closed/inner.txt'), 'utf8'), 'x');
  assert.equal(await fsp.readFile(path.join(dst, 'extra.txt'), 'utf8'), 'would be deleted');
  await fsp.chmod(path.join(src, 'closed'), 0o755);
});

test('FERRY_E_WRITE: an unwritable destination is reported per file, exit 1, no temp files', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, { 'a.txt': 'a', 'b.txt': 'b' });
  await fsp.mkdir(dst);
  const who = await unprivileged(base);
  if (isRoot()) execFileSync('chown', ['0:0', dst]);
  else await fsp.chmod(dst, 0o555);
  const r = await runFerry(['copy', `${src}/`, dst, '--progress=never'], who);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^ferry: FERRY_E_WRITE: a\.txt: cannot write: EACCES \(permission denied\)$/m);
  assert.match(r.stderr, /^ferry: FERRY_E_WRITE: b\.txt: cannot write: EACCES \(permission denied\)$/m);
  assert.match(r.stderr, /failed [1-9]/);
  await fsp.chmod(dst, 0o755);
  assert.deepEqual(await fsp.readdir(dst), []);
});

test('FERRY_E_NOSPC: a full destination (1 MiB tmpfs) fails that file only, leaving no temp file', async (t) => {
  if (!isRoot()) {
    if (CI) assert.fail('needs root to mount a tmpfs (CI=true: not skipping)');
    t.skip('needs root to mount a small tmpfs');
    return;
  }
  const base = await tmpDir();
  const mnt = path.join(base, 'mnt');
  await fsp.mkdir(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (e) {
    if (CI) throw e;
    t.skip(`cannot mount tmpfs here: ${String((e as Error).message).split('\n')[0]}`);
    return;
  }
  mounts.push(mnt);
  const src = path.join(base, 'src');
  await makeTree(src, { 'big.bin': Buffer.alloc(3 * 1024 * 1024, 0x5a), 's1.txt': 'small one', 's2.txt': 'small two', 'd/s3.txt': 'small three' });
  const dst = path.join(mnt, 'dst');
  const r = await runFerry(['copy', `${src}/`, dst, '-q', '1', '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^ferry: FERRY_E_NOSPC: big\.bin: no space left on the destination device$/m);
  const j = JSON.parse(r.stdout) as { failed: number; copied: number };
  assert.equal(j.failed, 1);
  assert.equal(j.copied, 3);
  assert.deepEqual([...(await snapshotTree(dst, { hash: false })).keys()].sort(), ['d', 'd/s3.txt', 's1.txt', 's2.txt']);
  execFileSync('umount', [mnt]);
  mounts.pop();
});

test('a directory entry that cannot be created fails its subtree, not the run', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, { 'x/y/1': '1', 'x/y/2': '2', 'ok/fine.txt': 'f' });
  // DST has a file where SRC has the directory x, in a directory we may not change.
  await makeTree(dst, { x: 'a file in the way', 'ok/': { type: 'dir' } });
  const who = await unprivileged(base);
  if (isRoot()) execFileSync('chown', ['0:0', dst]);
  else await fsp.chmod(dst, 0o555);
  const r = await runFerry(['copy', `${src}/`, dst, '--progress=never'], who);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ferry: FERRY_E_WRITE: x: cannot write: EACCES/m);
  assert.match(r.stderr, /^ferry: FERRY_E_WRITE: x\/y\/1: not copied: its directory could not be created$/m);
  assert.match(r.stderr, /^ferry: FERRY_E_WRITE: x\/y\/2: not copied: its directory could not be created$/m);
  assert.equal(await fsp.readFile(path.join(dst, 'ok/fine.txt'), 'utf8'), 'f');
  assert.equal(await fsp.readFile(path.join(dst, 'x'), 'utf8'), 'a file in the way');
  await fsp.chmod(dst, 0o755);
});
