// The quick check's batched lstat (fs/stat-batch: native/fs-walk.c statAt, fstatat
// relative to a directory fd, or lstat in a loop) and the SafeWriter's
// quickCheckFiles built on it: the native records equal the fallback's, field by
// field, and each batched verdict equals quickCheck()'s for the same entry, on a
// directory holding every case (same, mode differs, mtime differs, size differs,
// missing, a directory or a symlink where a file is expected, odd names).
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, closeSync, constants as C, lstatSync, mkdirSync, openSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Entry } from '../src/core/entry.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { ST_ERRNO, ST_GID, ST_MODE, ST_NLINK, ST_SIZE, ST_UID, STAT_BIGS, STAT_NUMS, statNames, statNamesSync } from '../src/fs/stat-batch.js';
import { statAtAddon } from '../src/native/index.js';
import { cleanupTmpDirs, tmpDir } from './support/tree.js';
import { isCI } from './support/tools.js';

after(cleanupTmpDirs);

function needNative(t: TestContext): boolean {
  if (statAtAddon() !== undefined) return true;
  if (process.env.FERRY_NATIVE === '0') {
    t.skip('FERRY_NATIVE=0: the native statAt is off on purpose');
    return false;
  }
  if (isCI()) throw new Error('the native addon is not built; CI=true forbids skipping');
  t.skip('the native addon is not built (node scripts/build-native.mjs)');
  return false;
}

const MTIME = 1_700_000_000;

/** A directory of every case; returns its path and the entries a sender would list for it. */
async function caseDir(): Promise<{ dst: string; entries: Entry[] }> {
  const dst = await tmpDir();
  const d = path.join(dst, 'd');
  mkdirSync(d);
  const file = (name: string, size: number, mode = 0o644, mtime = MTIME): void => {
    writeFileSync(path.join(d, name), Buffer.alloc(size, 1));
    chmodSync(path.join(d, name), mode);
    utimesSync(path.join(d, name), mtime, mtime);
  };
  file('same', 10);
  file('mode', 10, 0o600);
  file('touched', 10, 0o644, MTIME + 5);
  file('size', 11);
  file('ünï cødé name', 3);
  file(' spaced ', 0);
  mkdirSync(path.join(d, 'isdir'));
  symlinkSync('same', path.join(d, 'islink'));
  const e = (name: string, size: number): Entry => ({ path: `d/${name}`, kind: 'file', size, mode: 0o644, mtimeNs: BigInt(MTIME) * 1_000_000_000n });
  const entries = [e('same', 10), e('mode', 10), e('touched', 10), e('size', 10), e('ünï cødé name', 3), e(' spaced ', 0), e('missing', 1), e('isdir', 0), e('islink', 4)];
  // A second directory, and a file whose directory DST lacks: two groups and a null.
  mkdirSync(path.join(dst, 'e'));
  writeFileSync(path.join(dst, 'e', 'x'), 'abc');
  utimesSync(path.join(dst, 'e', 'x'), MTIME, MTIME);
  entries.push({ ...e('x', 3), path: 'e/x' }, { ...e('y', 3), path: 'nodir/y' });
  return { dst, entries };
}

test('statNames: native records equal the lstat fallback, field by field', async (t) => {
  if (!needNative(t)) return;
  const { dst, entries } = await caseDir();
  const dir = path.join(dst, 'd');
  const names = entries.filter((x) => x.path.startsWith('d/')).map((x) => x.path.slice(2));
  const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    const native = await statNames(fd, `/proc/self/fd/${fd}`, names, true);
    const js = statNamesSync(`/proc/self/fd/${fd}`, names);
    assert.deepEqual(Array.from(native.nums), Array.from(js.nums));
    assert.deepEqual(Array.from(native.big), Array.from(js.big));
  } finally {
    closeSync(fd);
  }
});

test('statNames: the records say what lstat says, ENOENT for a missing name', async () => {
  const { dst, entries } = await caseDir();
  const dir = path.join(dst, 'd');
  const names = entries.filter((x) => x.path.startsWith('d/')).map((x) => x.path.slice(2));
  const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    const { nums, big } = await statNames(fd, `/proc/self/fd/${fd}`, names);
    names.forEach((name, i) => {
      const o = i * STAT_NUMS;
      if (name === 'missing') {
        assert.equal(nums[o + ST_ERRNO], osConstants.errno.ENOENT);
        return;
      }
      const st = lstatSync(path.join(dir, name), { bigint: true });
      assert.equal(nums[o + ST_ERRNO], 0, name);
      assert.equal(nums[o + ST_MODE], Number(st.mode), name);
      assert.equal(nums[o + ST_SIZE], Number(st.size), name);
      assert.equal(nums[o + ST_NLINK], Number(st.nlink), name);
      assert.equal(nums[o + ST_UID], Number(st.uid), name);
      assert.equal(nums[o + ST_GID], Number(st.gid), name);
      assert.equal(big[i * STAT_BIGS], st.mtimeNs, name);
      assert.equal(BigInt.asUintN(64, big[i * STAT_BIGS + 2]!), st.ino, name);
    });
  } finally {
    closeSync(fd);
  }
});

test('quickCheckFiles: each verdict is the one quickCheck() gives, natively and with the fallback', async () => {
  const { dst, entries } = await caseDir();
  const w = await SafeWriter.open(dst);
  try {
    // The writer verifies directories as a transfer's mkdir does.
    for (const dir of ['d', 'e']) await w.mkdir({ path: dir, kind: 'dir', size: 0, mode: 0o755, mtimeNs: 0n });
    const one: Array<string | null> = [];
    for (const e of entries) one.push(e.path.startsWith('nodir/') ? null : await w.quickCheck(e));
    for (const native of [true, false]) {
      const batch = await w.quickCheckFiles(entries, { native });
      assert.deepEqual(batch, one, `native: ${native}`);
    }
    // The cases are what they claim to be.
    assert.deepEqual(one.slice(0, 9), ['same', 'meta', 'touched', 'differs', 'same', 'same', 'missing', 'differs', 'differs']);
  } finally {
    w.close();
  }
});
