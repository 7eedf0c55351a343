// The walk's native listing (native/fs-walk.c: getdents64 + fstatat + readlinkat on
// the checked directory fd) against its TypeScript fallback (readdir + lstat through
// /proc/self/fd/N): the same entries, fields, order within a directory, hard-link
// choices and problem reports, on a tree with odd names, symlinks (good, dangling,
// escaping), hard links, FIFOs, temp names, a name that is not UTF-8 and thousands
// of entries in one directory. Under FERRY_NATIVE=0 there is no native side to compare.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, promises as fsp, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { SourceEntry } from '../src/core/entry.js';
import type { FerryError } from '../src/core/errors.js';
import { compileExcludes } from '../src/fs/exclude.js';
import { ST_ERRNO, ST_GID, ST_MODE, ST_SIZE, ST_UID, statNamesSync } from '../src/fs/stat-batch.js';
import { tempNameFor } from '../src/fs/temp-names.js';
import { resolveSource, walk, type WalkOptions } from '../src/fs/walk.js';
import { fsWalkAddon, nativeStatus } from '../src/native/index.js';
import { cleanupTmpDirs, makeTree, tmpDir, type TreeSpec } from './support/tree.js';
import { isCI } from './support/tools.js';

after(cleanupTmpDirs);

function needNative(t: TestContext): boolean {
  if (fsWalkAddon() !== undefined) return true;
  if (process.env.FERRY_NATIVE === '0') {
    t.skip('FERRY_NATIVE=0: the native listing is off on purpose');
    return false;
  }
  if (isCI()) throw new Error('the native addon is not built; CI=true forbids skipping');
  t.skip('the native addon is not built (node scripts/build-native.mjs)');
  return false;
}

interface Walked {
  /** Entries per directory, in emission order. */
  byDir: Map<string, SourceEntry[]>;
  all: SourceEntry[];
  problems: string[];
}

async function walkWith(src: string, opts: WalkOptions): Promise<Walked> {
  const problems: string[] = [];
  const all: SourceEntry[] = [];
  const byDir = new Map<string, SourceEntry[]>();
  const root = await resolveSource(src);
  for await (const batch of walk(root, { ...opts, onProblem: (e: FerryError) => problems.push(`${e.code} ${e.message}`) })) {
    for (const e of batch) {
      all.push(e);
      const d = path.posix.dirname(e.path);
      if (!byDir.has(d)) byDir.set(d, []);
      byDir.get(d)!.push(e);
    }
  }
  problems.sort();
  return { byDir, all, problems };
}

async function oddTree(): Promise<string> {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: TreeSpec = {
    'plain.txt': 'plain',
    'with space and\ttab': 'ws',
    'new\nline': 'nl',
    '-dash': 'dash',
    'ünïcödé/名前.bin': Buffer.alloc(5000, 7),
    'emoji 🦀/x': 'crab',
    'valid \ufffd replacement char': 'fffd',
    'a/b/c/d/e/deep': 'deep',
    'empty': '',
    'exec.sh': { type: 'file', content: '#!/bin/sh\n', mode: 0o755 },
    'h/first': 'linked',
    'h/second': { type: 'hardlink', target: 'h/first' },
    'h/third': { type: 'hardlink', target: 'h/first' },
    'other/h4': { type: 'hardlink', target: 'h/first' },
    'ln/rel': { type: 'symlink', target: '../plain.txt' },
    'ln/dangling': { type: 'symlink', target: 'nowhere/at/all' },
    'ln/abs': { type: 'symlink', target: '/etc/passwd' },
    'ln/dir': { type: 'symlink', target: '../a' },
    'ln/odd target': { type: 'symlink', target: 'x\ny' },
    'skipme/inner': 'excluded by pattern',
    'keep.log': 'excluded by pattern',
  };
  for (let i = 0; i < 2500; i++) spec[`many/f${String(i).padStart(5, '0')}`] = { type: 'file', content: String(i), mtime: 1_650_000_000_000_000_000n + BigInt(i) * 999_999n };
  await makeTree(src, spec);
  // A temp file of an interrupted run (skipped), a FIFO (reported unsupported),
  // a name that is not valid UTF-8 (reported), a long name.
  await fsp.writeFile(path.join(src, 'many', tempNameFor('f00001')), 'partial');
  execFileSync('mkfifo', [path.join(src, 'fifo')]);
  writeFileSync(Buffer.concat([Buffer.from(`${src}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from('-name')]), 'bad');
  await fsp.writeFile(path.join(src, 'n'.repeat(255)), 'long');
  return src;
}

test('native walk: same entries, fields, per-directory order, hard links and problem reports as the readdir + lstat walk', async (t) => {
  if (!needNative(t)) return;
  assert.equal(nativeStatus().walk, 'native');
  const src = await oddTree();
  for (const [label, opts] of [
    ['defaults', {}],
    ['small chunks, one directory at a time, excludes', { concurrency: 7, dirConcurrency: 1, exclude: compileExcludes(['skipme/', '*.log']) }],
  ] as Array<[string, WalkOptions]>) {
    for (const prefix of [`${src}/`, src]) {
      const nat = await walkWith(prefix, { ...opts, native: true });
      const js = await walkWith(prefix, { ...opts, native: false, statMode: 'sync' });
      assert.ok(nat.all.length > 2500, `${label}: the walk saw the tree`);
      assert.deepEqual(nat.problems, js.problems, `${label} ${prefix}: problems`);
      assert.ok(nat.problems.some((p) => p.includes('not valid UTF-8')), `${label}: the non-UTF-8 name is reported`);
      assert.ok(nat.problems.some((p) => p.includes('fifo: skipped')), `${label}: the FIFO is reported`);
      assert.deepEqual([...nat.byDir.keys()].sort(), [...js.byDir.keys()].sort(), `${label}: directories`);
      for (const [dir, list] of js.byDir) {
        // Within a directory the order is the same (hard-link choices depend on it).
        assert.deepEqual(nat.byDir.get(dir), list, `${label} ${prefix}: entries of ${dir}`);
      }
      const links = nat.all.filter((e) => e.kind === 'hardlink').map((e) => e.path).sort();
      assert.deepEqual(links.length, 3, `${label}: three of the four links are hardlinks`);
    }
  }
});

test('native walk: a directory that cannot be listed is reported as the fallback reports it', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, { 'ok/a': 'a', 'gone/b': 'b' });
  // Removed between its listing in the parent and its own listing.
  const hook = async (rel: string, abs: string): Promise<void> => {
    if (rel === 'gone') await fsp.rm(abs, { recursive: true, force: true }).catch(() => {});
  };
  const nat = await walkWith(`${src}/`, { native: true, beforeListDir: hook });
  await makeTree(src, { 'gone/b': 'b' });
  const js = await walkWith(`${src}/`, { native: false, beforeListDir: hook });
  assert.deepEqual(nat.problems, js.problems);
  assert.deepEqual(nat.all.map((e) => e.path).sort(), js.all.map((e) => e.path).sort());
});

test('native walk: the paired listing gives each regular file the lstat of its name in the peer directory, as statNames has it', async (t) => {
  if (!needNative(t)) return;
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const peer = path.join(base, 'peer');
  await makeTree(src, { 'd/same': 'same', 'd/gone': 'gone', 'd/mode': 'mode', 'd/now-dir': 'x', 'd/ln': { type: 'symlink', target: 'same' }, top: 'top', 'only-src/a': 'a' });
  execFileSync('cp', ['-a', `${src}/.`, peer]);
  await fsp.rm(path.join(peer, 'd/gone'));
  await fsp.chmod(path.join(peer, 'd/mode'), 0o600);
  await fsp.rm(path.join(peer, 'd/now-dir'));
  await fsp.mkdir(path.join(peer, 'd/now-dir'));
  await fsp.rm(path.join(peer, 'only-src'), { recursive: true });
  const opened = new Map<string, number>();
  const released: string[] = [];
  const pairWith = (rel: string): { fd: number; release: () => void } | null => {
    let fd: number;
    try {
      fd = openSync(path.join(peer, rel), 'r');
    } catch {
      return null; // only-src: no peer directory, no records
    }
    opened.set(rel, fd);
    return { fd, release: () => released.push(rel) };
  };
  try {
    const w = await walkWith(`${src}/`, { native: true, peer: pairWith });
    assert.deepEqual([...opened.keys()].sort(), ['', 'd']);
    assert.deepEqual(released.sort(), ['', 'd'], 'every peer directory is released once its listing is back');
    const files = w.all.filter((e) => e.kind === 'file');
    assert.equal(files.length, 6);
    for (const e of w.all) {
      if (e.kind !== 'file' || e.path.startsWith('only-src/')) {
        assert.equal(e.peer, undefined, `${e.path}: no record`);
        continue;
      }
      const dir = path.posix.dirname(e.path);
      const { nums, big } = statNamesSync(path.join(peer, dir === '.' ? '' : dir), [path.posix.basename(e.path)]);
      const want = nums[ST_ERRNO] === 0
        ? { errno: 0, mode: nums[ST_MODE], size: nums[ST_SIZE], mtimeNs: big[0], uid: nums[ST_UID], gid: nums[ST_GID] }
        : { errno: nums[ST_ERRNO], mode: 0, size: 0, mtimeNs: 0n, uid: 0, gid: 0 };
      assert.deepEqual(e.peer, want, `${e.path}: the peer's record`);
    }
    const byPath = new Map(files.map((e) => [e.path, e.peer]));
    assert.equal(byPath.get('d/gone')?.errno, osConstants.errno.ENOENT);
    assert.equal((byPath.get('d/mode')!.mode & 0o777), 0o600);
    assert.equal(byPath.get('d/now-dir')!.mode & 0o170000, 0o040000, 'a directory in the peer is reported as one');
  } finally {
    for (const fd of opened.values()) closeSync(fd);
  }
});
