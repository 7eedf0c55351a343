/**
 * Test helpers shared by every suite that builds or compares directory trees.
 *
 *   const root = await tmpDir();                 // under os.tmpdir(); removed by cleanupTmpDirs()
 *   await makeTree(root, { 'a/b.txt': 'hi', 'd/': { type: 'dir', mode: 0o755 }, ... });
 *   assert.deepEqual(await compareTrees(src, dst), []);   // [] = identical
 *   const r = await runFerry(['copy', src + '/', dst, '--json']);
 *
 * Spec values: a string/Buffer is a file's content; objects give the kind and metadata
 * (see TreeSpecEntry). Paths ending in '/' are directories. Entries are created in
 * sorted order with parents first; hard links and symlinks after files; modes and
 * mtimes last (deepest first) so directory mtimes stick.
 *
 * compareTrees lists differences as readable strings: kind, content (SHA-256), size,
 * mode, mtime (exactly, or without the native addon equal to what Node's utimes
 * stores: fs/meta-native mtimesEqual), symlink target, hard-link
 * groups (which paths share an inode), and optionally sparseness.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mtimesEqual, setTimesPath } from '../../src/fs/meta-native.js';
import { cliEntry } from './cli-entry.js';
import { isCI } from './tools.js';

export type TreeSpecEntry =
  | string
  | Buffer
  | { type: 'file'; content?: string | Buffer; mode?: number; mtime?: bigint | Date }
  | { type: 'sparse'; size: number; data?: Array<{ offset: number; content: string | Buffer }>; mode?: number; mtime?: bigint | Date }
  | { type: 'dir'; mode?: number; mtime?: bigint | Date }
  | { type: 'symlink'; target: string; mtime?: bigint | Date }
  | { type: 'hardlink'; target: string };

export type TreeSpec = Record<string, TreeSpecEntry>;

const made: string[] = [];

/** A fresh directory under os.tmpdir(), removed by cleanupTmpDirs() (and at exit). */
export async function tmpDir(prefix = 'ferry-test-'): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

export async function cleanupTmpDirs(): Promise<void> {
  while (made.length > 0) {
    const d = made.pop()!;
    await makeWritable(d).catch(() => {});
    try {
      await fsp.rm(d, { recursive: true, force: true });
    } catch (e) {
      // A tree deeper than PATH_MAX (ferry writes relative to directory descriptors and
      // can make one): rm(1) walks it relative to descriptors too.
      if ((e as NodeJS.ErrnoException).code !== 'ENAMETOOLONG') throw e;
      execFileSync('rm', ['-rf', '--', d]);
    }
  }
}

process.on('exit', () => {
  for (const d of made) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      try {
        execFileSync('rm', ['-rf', '--', d]);
      } catch {
        /* best effort */
      }
    }
  }
});

async function makeWritable(d: string): Promise<void> {
  const st = await fsp.lstat(d);
  if (!st.isDirectory()) return;
  await fsp.chmod(d, 0o700);
  for (const n of await fsp.readdir(d)) await makeWritable(path.join(d, n)).catch(() => {});
}

function toNs(t: bigint | Date): bigint {
  return t instanceof Date ? BigInt(t.getTime()) * 1_000_000n : t;
}

/** Set an entry's times (not following a last symlink), to the nanosecond where ferry can (fs/meta-native). */
function setTimes(p: string, t: bigint | Date): void {
  setTimesPath(p, toNs(t), false);
}

/** Build a tree under `root` (which may exist). */
export async function makeTree(root: string, spec: TreeSpec): Promise<void> {
  const names = Object.keys(spec).sort();
  const late: Array<() => Promise<void>> = [];
  const meta: Array<{ p: string; mode?: number; mtime?: bigint | Date; link?: boolean; depth: number }> = [];
  const isDirKey = (k: string): boolean => k.endsWith('/') || (typeof spec[k] === 'object' && !Buffer.isBuffer(spec[k]) && (spec[k] as { type: string }).type === 'dir');
  for (const key of names) {
    const rel = key.replace(/\/+$/, '');
    const p = path.join(root, rel);
    const v = spec[key]!;
    await fsp.mkdir(path.dirname(p), { recursive: true });
    const depth = rel.split('/').length;
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      if (isDirKey(key)) await fsp.mkdir(p, { recursive: true });
      else await fsp.writeFile(p, v);
      continue;
    }
    switch (v.type) {
      case 'file':
        await fsp.writeFile(p, v.content ?? '');
        meta.push({ p, depth, ...(v.mode !== undefined ? { mode: v.mode } : {}), ...(v.mtime !== undefined ? { mtime: v.mtime } : {}) });
        break;
      case 'sparse': {
        const fh = await fsp.open(p, 'w');
        for (const d of v.data ?? []) {
          const b = Buffer.from(d.content);
          await fh.write(b, 0, b.length, d.offset);
        }
        await fh.truncate(v.size);
        await fh.close();
        meta.push({ p, depth, ...(v.mode !== undefined ? { mode: v.mode } : {}), ...(v.mtime !== undefined ? { mtime: v.mtime } : {}) });
        break;
      }
      case 'dir':
        await fsp.mkdir(p, { recursive: true });
        meta.push({ p, depth, ...(v.mode !== undefined ? { mode: v.mode } : {}), ...(v.mtime !== undefined ? { mtime: v.mtime } : {}) });
        break;
      case 'symlink':
        late.push(async () => {
          await fsp.symlink(v.target, p);
          if (v.mtime !== undefined) setTimes(p, v.mtime);
        });
        break;
      case 'hardlink':
        late.push(() => fsp.link(path.join(root, v.target), p));
        break;
    }
  }
  for (const f of late) await f();
  meta.sort((a, b) => b.depth - a.depth);
  for (const m of meta) {
    if (m.mode !== undefined) await fsp.chmod(m.p, m.mode);
    if (m.mtime !== undefined) setTimes(m.p, m.mtime);
  }
}

export interface SnapEntry {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  mtimeNs: bigint;
  ino: bigint;
  nlink: number;
  allocated: number;
  hash?: string;
  target?: string;
}

/** Every entry under root (relative path → metadata and content hash). */
export async function snapshotTree(root: string, opts: { hash?: boolean } = {}): Promise<Map<string, SnapEntry>> {
  const out = new Map<string, SnapEntry>();
  async function rec(dir: string, rel: string): Promise<void> {
    for (const name of (await fsp.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await fsp.lstat(p, { bigint: true });
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      const e: SnapEntry = {
        kind,
        size: kind === 'file' ? Number(st.size) : 0,
        mode: Number(st.mode & 0o7777n),
        mtimeNs: st.mtimeNs,
        ino: st.ino,
        nlink: Number(st.nlink),
        allocated: Number(st.blocks) * 512,
      };
      if (kind === 'file' && opts.hash !== false) e.hash = createHash('sha256').update(await fsp.readFile(p)).digest('hex');
      if (kind === 'symlink') e.target = await fsp.readlink(p);
      out.set(r, e);
      if (kind === 'dir') await rec(p, r);
    }
  }
  await rec(root, '');
  return out;
}

export interface CompareOptions {
  checkMtime?: boolean;
  checkMode?: boolean;
  /** Compare which paths share an inode (default true). */
  checkHardlinks?: boolean;
  /** Files sparse in a must be sparse in b (default false). */
  checkSparse?: boolean;
  /** Compare symlinks' own mtimes (default true when checkMtime). */
  checkLinkMtime?: boolean;
  ignore?: (rel: string) => boolean;
}

/** Differences between two trees as readable lines; [] means identical. */
export async function compareTrees(a: string, b: string, opts: CompareOptions = {}): Promise<string[]> {
  const checkMtime = opts.checkMtime ?? true;
  const checkMode = opts.checkMode ?? true;
  const sa = await snapshotTree(a);
  const sb = await snapshotTree(b);
  const diffs: string[] = [];
  const ign = opts.ignore ?? ((): boolean => false);
  for (const [rel, x] of sa) {
    if (ign(rel)) continue;
    const y = sb.get(rel);
    if (!y) {
      diffs.push(`${rel}: missing in ${b}`);
      continue;
    }
    if (x.kind !== y.kind) {
      diffs.push(`${rel}: kind ${x.kind} != ${y.kind}`);
      continue;
    }
    if (x.kind === 'file') {
      if (x.size !== y.size) diffs.push(`${rel}: size ${x.size} != ${y.size}`);
      else if (x.hash !== y.hash) diffs.push(`${rel}: content differs`);
      if (opts.checkSparse && x.allocated < x.size && y.allocated >= y.size) diffs.push(`${rel}: not sparse (${y.allocated} bytes allocated of ${y.size})`);
    }
    if (x.kind === 'symlink' && x.target !== y.target) diffs.push(`${rel}: symlink target ${x.target} != ${y.target}`);
    if (checkMode && x.kind !== 'symlink' && x.mode !== y.mode) diffs.push(`${rel}: mode ${x.mode.toString(8)} != ${y.mode.toString(8)}`);
    if (checkMtime && (x.kind !== 'symlink' || opts.checkLinkMtime !== false)) {
      if (!mtimesEqual(x.mtimeNs, y.mtimeNs)) diffs.push(`${rel}: mtime ${x.mtimeNs} != ${y.mtimeNs}`);
    }
  }
  for (const rel of sb.keys()) if (!ign(rel) && !sa.has(rel)) diffs.push(`${rel}: extra in ${b}`);
  if (opts.checkHardlinks ?? true) {
    const groups = (s: Map<string, SnapEntry>): Map<string, string> => {
      const byIno = new Map<bigint, string[]>();
      for (const [rel, e] of s) if (e.kind === 'file' && e.nlink > 1 && !ign(rel)) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), rel]);
      const m = new Map<string, string>();
      for (const paths of byIno.values()) for (const p of paths) m.set(p, paths.sort().join(','));
      return m;
    };
    const ga = groups(sa);
    const gb = groups(sb);
    for (const [rel, g] of ga) if (gb.get(rel) !== g) diffs.push(`${rel}: hard links ${g} != ${gb.get(rel) ?? '(none)'}`);
  }
  return diffs;
}

/** Absolute path of the repo root (dist/test/support -> ../../..). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The CLI's entry as bin/ferry picks it: the bundle unless main.js is newer (support/cli-entry.ts). */
export const FERRY_MAIN = cliEntry(REPO_ROOT);
/** main.js itself, for a test that looks at which modules a command loads. */
export const FERRY_MODULES_MAIN = path.join(REPO_ROOT, 'dist/src/cli/main.js');
export const FERRY_BIN = path.join(REPO_ROOT, 'bin/ferry');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run the real CLI (node FERRY_MAIN, or `entry`) and collect its output. */
export function runFerry(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; uid?: number; gid?: number; timeoutMs?: number; entry?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [opts.entry ?? FERRY_MAIN, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** True when running as root (some error cases need a non-root child or a mount). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * A small tmpfs at a new directory under `root`, for disk-full cases; `unmount()` in a finally.
 * Needs root: without it the test is skipped (and fails under CI=true, where nothing may skip).
 */
export async function smallTmpfs(t: TestContext, root: string, size: string): Promise<{ dir: string; unmount(): void } | null> {
  if (!isRoot()) {
    if (isCI()) throw new Error('needs root to mount a small tmpfs; CI=true forbids skipping');
    t.skip('needs root to mount a small tmpfs');
    return null;
  }
  const dir = path.join(root, 'mnt');
  await fsp.mkdir(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  return { dir, unmount: () => execFileSync('umount', [dir]) };
}

/**
 * A small ext4 filesystem (an image file in `root`, mounted through a loop device) at a
 * new directory under `root`, for disk-full cases on a filesystem with direct I/O (tmpfs
 * has none); `unmount()` in a finally removes the image too. Needs root and mkfs.ext4:
 * without them the test is skipped (and fails under CI=true, where nothing may skip).
 */
export async function smallExt4(t: TestContext, root: string, mib: number): Promise<{ dir: string; unmount(): void } | null> {
  const why = !isRoot() ? 'needs root to mount a loop device' : null;
  const image = path.join(root, 'ext4.img');
  const dir = path.join(root, 'ext4');
  try {
    if (why !== null) throw new Error(why);
    await fsp.writeFile(image, '');
    await fsp.truncate(image, mib * 1024 * 1024);
    execFileSync('mkfs.ext4', ['-q', '-F', image], { stdio: 'pipe' });
    await fsp.mkdir(dir);
    execFileSync('mount', ['-o', 'loop', image, dir], { stdio: 'pipe' });
  } catch (e) {
    const msg = `cannot mount a small ext4 here: ${String((e as Error).message).split('\n')[0]}`;
    if (isCI()) throw new Error(`${msg}; CI=true forbids skipping`);
    t.skip(msg);
    return null;
  }
  return {
    dir,
    unmount: () => {
      execFileSync('umount', [dir]);
      rmSync(image, { force: true });
    },
  };
}
