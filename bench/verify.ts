/**
 * Tree comparison for benchmark results: a figure only counts if the copy is right.
 *
 * `snapshotTree` walks a tree and records, for every path, its type, size,
 * permission bits, symlink target and the SHA-256 of its content; `compareToSnapshot`
 * walks a destination and lists every difference. The source snapshot is taken
 * once per dataset and reused for every run. Walking and hashing run many
 * operations at once (bounded), since this is done after every run of every tool.
 * mtimes are deliberately not compared: `cp -r` and scp do not keep them.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mode: number;
  target?: string;
  sha256?: string;
}

export type Snapshot = Map<string, NodeInfo>;

/** Run `fn` over `items` with at most `limit` in flight. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function hashFile(path: string, size: number): Promise<string> {
  if (size <= 4 * 1024 * 1024) return createHash('sha256').update(await readFile(path)).digest('hex');
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Every entry under `root` (the root itself excluded), keyed by '/'-relative path. */
export async function snapshotTree(root: string): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  let level: string[] = [''];
  while (level.length > 0) {
    const nextLevel: string[] = [];
    await forEachLimit(level, 16, async (rel) => {
      const entries = await readdir(rel === '' ? root : join(root, rel));
      await forEachLimit(entries, 32, async (name) => {
        const r = rel === '' ? name : `${rel}/${name}`;
        const abs = join(root, r);
        const st = await lstat(abs);
        const mode = st.mode & 0o7777;
        if (st.isDirectory()) {
          snap.set(r, { type: 'dir', size: 0, mode });
          nextLevel.push(r);
        } else if (st.isSymbolicLink()) {
          snap.set(r, { type: 'symlink', size: 0, mode: 0, target: await readlink(abs) });
        } else if (st.isFile()) {
          snap.set(r, { type: 'file', size: st.size, mode, sha256: await hashFile(abs, st.size) });
        } else {
          snap.set(r, { type: 'other', size: 0, mode });
        }
      });
    });
    level = nextLevel;
  }
  return snap;
}

export interface Comparison {
  ok: boolean;
  /** Number of differences found. */
  differences: number;
  /** The first few, one line each. */
  examples: string[];
}

export async function compareToSnapshot(expected: Snapshot, dstRoot: string): Promise<Comparison> {
  const examples: string[] = [];
  let differences = 0;
  const note = (line: string): void => {
    differences++;
    if (examples.length < 10) examples.push(line);
  };
  let actual: Snapshot;
  try {
    actual = await snapshotTree(dstRoot);
  } catch (e) {
    return { ok: false, differences: 1, examples: [`cannot read destination ${dstRoot}: ${(e as Error).message}`] };
  }
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (got === undefined) {
      note(`missing: ${path}`);
      continue;
    }
    if (got.type !== want.type) note(`type: ${path}: ${got.type} instead of ${want.type}`);
    else if (got.size !== want.size) note(`size: ${path}: ${got.size} instead of ${want.size}`);
    else if (got.mode !== want.mode) note(`mode: ${path}: ${got.mode.toString(8)} instead of ${want.mode.toString(8)}`);
    else if (got.target !== want.target) note(`symlink target: ${path}`);
    else if (got.sha256 !== want.sha256) note(`content: ${path}`);
  }
  for (const path of actual.keys()) if (!expected.has(path)) note(`extra: ${path}`);
  return { ok: differences === 0, differences, examples };
}
