/**
 * Deterministic benchmark datasets: the shapes of the uring-sync seed, generated
 * from a seed so every machine (and every re-run) gets byte-identical trees.
 *
 * Content is an AES-256-CTR keystream (key = SHA-256 of the seed, counter block =
 * file index): incompressible, so no tool can win by compressing, and as fast to
 * produce as the disk can take it. Sizes come from a small seeded PRNG. Files are
 * laid out 1000 to a directory (`d0000/f000000.bin`, ...), like the seed's
 * generator. Small files are written by 64 concurrent writeFile calls; big files
 * are streamed in 8 MiB chunks.
 *
 * Named datasets are cached under `.bench-data/<name>/` (gitignored) with a marker
 * `.bench-data/<name>.json` recording the shape; the marker is written last, so an
 * interrupted generation is detected and redone. The marker lives beside the tree,
 * not in it, so it is never part of what is copied.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DatasetShape {
  files: number;
  minSize: number;
  maxSize: number;
  /** Files per directory; default 1000. */
  perDir?: number;
  /** Default 1. */
  seed?: number | string;
}

export interface DatasetInfo {
  name: string;
  dir: string;
  shape: DatasetShape;
  files: number;
  dirs: number;
  bytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The named shapes. `full` switches ml_images to the seed's 100,000 files. */
export function namedShape(name: string, full = false): DatasetShape {
  switch (name) {
    case 'ml_tiny':
      return { files: 1_000, minSize: 1 * KiB, maxSize: 7 * KiB, seed: 'ml_tiny' };
    case 'ml_small':
      return { files: 10_000, minSize: 1 * KiB, maxSize: 7 * KiB, seed: 'ml_small' };
    case 'ml_large':
      return { files: 100_000, minSize: 1 * KiB, maxSize: 7 * KiB, seed: 'ml_large' };
    case 'ml_images':
      return { files: full ? 100_000 : 10_000, minSize: 80 * KiB, maxSize: 120 * KiB, seed: 'ml_images' };
    case 'big':
      return { files: 2, minSize: 1 * GiB, maxSize: 1 * GiB, seed: 'big' };
    case 'big_quick':
      return { files: 2, minSize: 128 * MiB, maxSize: 128 * MiB, seed: 'big_quick' };
    default:
      throw new Error(`unknown dataset '${name}' (ml_tiny, ml_small, ml_large, ml_images, big, big_quick)`);
  }
}

export const DATASET_NAMES = ['ml_tiny', 'ml_small', 'ml_large', 'ml_images', 'big', 'big_quick'] as const;

/** Where named datasets are cached: `<repo>/.bench-data` (dist/bench/ → ../../). */
export function defaultCacheRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '.bench-data');
}

/** Relative path of file `i`. */
export function filePath(i: number, perDir = 1000): string {
  return `d${String(Math.floor(i / perDir)).padStart(4, '0')}/f${String(i).padStart(6, '0')}.bin`;
}

/** The size of every file, in order: a seeded PRNG (mulberry32) over [minSize, maxSize]. */
export function fileSizes(shape: DatasetShape): number[] {
  const seedHash = createHash('sha256').update(`sizes:${String(shape.seed ?? 1)}`).digest();
  let state = seedHash.readUInt32LE(0);
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const span = shape.maxSize - shape.minSize + 1;
  const out: number[] = [];
  for (let i = 0; i < shape.files; i++) out.push(shape.minSize + Math.floor(next() * span));
  return out;
}

function contentKey(shape: DatasetShape): Buffer {
  return createHash('sha256').update(`content:${String(shape.seed ?? 1)}`).digest();
}

function counterBlock(i: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(Math.floor(i / 2 ** 32), 0);
  iv.writeUInt32BE(i >>> 0, 4);
  return iv;
}

/**
 * Write the tree for `shape` into `dir` (created; must not already hold files
 * of another shape). Returns counts. Deterministic: same shape, same bytes.
 */
export async function generateDataset(dir: string, shape: DatasetShape): Promise<{ files: number; dirs: number; bytes: number }> {
  const perDir = shape.perDir ?? 1000;
  const sizes = fileSizes(shape);
  const key = contentKey(shape);
  const dirs = Math.ceil(shape.files / perDir);
  await mkdir(dir, { recursive: true });
  for (let d = 0; d < dirs; d++) await mkdir(join(dir, dirname(filePath(d * perDir, perDir))), { recursive: true });

  const bigThreshold = 16 * MiB;
  const zeros = Buffer.alloc(Math.min(Math.max(shape.maxSize, 1), bigThreshold));
  let nextIndex = 0;
  let bytes = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = nextIndex++;
      if (i >= shape.files) return;
      const size = sizes[i]!;
      bytes += size;
      const target = join(dir, filePath(i, perDir));
      const cipher = createCipheriv('aes-256-ctr', key, counterBlock(i));
      if (size <= bigThreshold) {
        await writeFile(target, cipher.update(zeros.subarray(0, size)), { mode: 0o644 });
      } else {
        const fh = await open(target, 'w', 0o644);
        try {
          const chunk = 8 * MiB;
          const zero = Buffer.alloc(chunk);
          for (let off = 0; off < size; off += chunk) {
            const n = Math.min(chunk, size - off);
            await fh.write(cipher.update(zero.subarray(0, n)));
          }
        } finally {
          await fh.close();
        }
      }
    }
  };
  const concurrency = shape.maxSize > bigThreshold ? 2 : 64;
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(shape.files, 1)) }, worker));
  return { files: shape.files, dirs, bytes };
}

const MARKER_VERSION = 1;

/**
 * The cached dataset `name`, generated first if missing or of another shape.
 * `log` receives one line when generation happens.
 */
export async function ensureDataset(
  name: string,
  opts: { full?: boolean; root?: string; log?: (line: string) => void } = {},
): Promise<DatasetInfo> {
  const shape = namedShape(name, opts.full ?? false);
  const root = opts.root ?? defaultCacheRoot();
  const dir = join(root, name);
  const markerPath = join(root, `${name}.json`);
  const wanted = JSON.stringify({ version: MARKER_VERSION, shape });
  try {
    const marker = JSON.parse(await readFile(markerPath, 'utf8')) as { version: number; shape: DatasetShape; files: number; dirs: number; bytes: number };
    if (JSON.stringify({ version: marker.version, shape: marker.shape }) === wanted) {
      return { name, dir, shape, files: marker.files, dirs: marker.dirs, bytes: marker.bytes };
    }
  } catch {
    // no marker or unreadable: generate
  }
  // Generate beside the final place and rename it in, so a concurrent bench run
  // never sees (or copies) a half-written tree under the final name.
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const t0 = Date.now();
  const counts = await generateDataset(tmp, shape);
  opts.log?.(`generated ${name}: ${counts.files} files, ${(counts.bytes / 1e6).toFixed(1)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${dir}`);
  await rm(markerPath, { force: true });
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  await rename(tmp, dir);
  await writeFile(markerPath, `${JSON.stringify({ version: MARKER_VERSION, shape, ...counts })}\n`);
  return { name, dir, shape, ...counts };
}
